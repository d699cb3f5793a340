"""zcopy's pytest plugin, run by pytest itself (pytester): tests that must fail do fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_strace

from zcopy import _stats

pytest_plugins = ["pytester"]

# Real files and sockets: a 1 MiB file sent over a socketpair, by zcopy or by hand.
HELPERS = '''
import os, socket, threading
import pytest
import zcopy

class JustReader:
    def __init__(self, f): self.f = f
    def read(self, n=-1): return self.f.read(n)

def send(tmp_path, wrap=lambda f: f, by_hand=False):
    data = os.urandom(1 << 20)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    a, b = socket.socketpair()
    got = bytearray()
    def drain():
        while chunk := b.recv(1 << 20):
            got.extend(chunk)
    reader = threading.Thread(target=drain)
    reader.start()
    with open(path, "rb") as f:
        if by_hand:  # what a framework's own read loop does: zcopy never sees it
            while chunk := f.read(1 << 16):
                a.sendall(chunk)
        else:
            zcopy.copy(a, wrap(f))
    a.close()
    reader.join(30)
    b.close()
    assert bytes(got) == data
'''


def write_tests(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(test_it=HELPERS + body)


def test_marked_test_passes_on_sendfile_and_fails_on_fallback(pytester: pytest.Pytester) -> None:
    write_tests(pytester, '''
@pytest.mark.zero_copy
def test_sendfile(tmp_path):
    send(tmp_path)

@pytest.mark.zero_copy
def test_wrapped(tmp_path):
    send(tmp_path, JustReader)

def test_unmarked_wrapped(tmp_path):
    send(tmp_path, JustReader)

@pytest.mark.zero_copy
def test_fallback_in_a_loop():
    import io
    for _ in range(12):
        zcopy.copy(io.BytesIO(), JustReader(io.BytesIO(b"abc")))
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["zcopy copy fell back to user space (12 of them):",
                                 "  ... and 2 more"])
    result.stdout.fnmatch_lines([
        "*_ test_wrapped _*",
        "zcopy copy fell back to user space (1 of them):",
        # route, bytes, the call site (file:line in function) and the reason, on one line
        "  user space, 1,048,576 bytes, at *test_it.py:* in send: user space: src JustReader "
        "has no fileno()*",
    ])
    assert not _stats.listeners, "the plugin left a listener installed"


def test_strict_option_guards_every_test(pytester: pytest.Pytester) -> None:
    write_tests(pytester, '''
def test_sendfile(tmp_path):
    send(tmp_path)

def test_wrapped(tmp_path):
    send(tmp_path, JustReader)
''')
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    strict = pytester.runpytest("-p", "no:cacheprovider", "--zcopy-strict")
    strict.assert_outcomes(passed=1, failed=1)
    strict.stdout.fnmatch_lines(["FAILED test_it.py::test_wrapped - Failed: zcopy copy fell*"])


def test_a_test_that_fails_on_its_own_keeps_its_failure(pytester: pytest.Pytester) -> None:
    write_tests(pytester, '''
@pytest.mark.zero_copy
def test_broken(tmp_path):
    send(tmp_path)
    assert 1 == 2, "the test's own failure"
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the test's own failure*"])


def test_fixture_records_the_routes_of_a_block(pytester: pytest.Pytester) -> None:
    write_tests(pytester, '''
import io

def test_routes(tmp_path, zcopy_routes):
    send(tmp_path)  # outside the block: not recorded
    with zcopy_routes() as copies:
        send(tmp_path)
        zcopy.copy(io.BytesIO(), b"abc")
        send(tmp_path, JustReader)
    assert copies.routes == ["sendfile", "write", "userspace"]
    [fell] = copies.fell_back
    assert fell.nbytes == 1 << 20 and "JustReader" in fell.reason
    assert fell.site.startswith(str(tmp_path.parent)) is False  # the test module, not tmp
    assert "test_it.py:" in fell.site and fell.site.endswith(" in send")
''')
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_strace_proof_passes_sendfile_and_catches_a_copy_zcopy_never_saw(
    pytester: pytest.Pytester,
) -> None:
    require_strace()
    write_tests(pytester, '''
@pytest.mark.zero_copy(strace=True)
def test_sendfile(tmp_path):
    send(tmp_path)

@pytest.mark.zero_copy(strace=True)
def test_framework_read_loop(tmp_path):
    send(tmp_path, by_hand=True)

@pytest.mark.zero_copy(strace=True)
def test_nothing_moved():
    pass
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*_ test_framework_read_loop _*",
        "strace saw bytes copied through user space (1.0 MiB):",
        "  1.0 MiB file -> socket by read/*",
        "*_ test_nothing_moved _*",
        "strace saw no zero-copy call*nothing is proved",
    ])


def test_strace_proof_skips_without_strace_but_fails_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_tests(pytester, '''
@pytest.mark.zero_copy(strace=True)
def test_sendfile(tmp_path):
    send(tmp_path)
''')
    empty = pytester.mkdir("no-tools")
    monkeypatch.setenv("PATH", str(empty))  # the child pytest finds no strace
    monkeypatch.delenv("CI", raising=False)
    here = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    here.assert_outcomes(skipped=1)
    here.stdout.fnmatch_lines(["*zero_copy(strace=True) cannot prove it: strace*"])
    monkeypatch.setenv("CI", "true")
    ci = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    ci.assert_outcomes(failed=1)
    ci.stdout.fnmatch_lines(["*CI=true: a proof may not skip*"])


def test_importing_zcopy_imports_no_pytest() -> None:
    code = "import sys, zcopy; print('pytest' in sys.modules, len(zcopy._stats.listeners))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert out.stdout.split() == ["False", "0"], out.stderr


def test_the_plugin_is_registered_by_installing_zcopy() -> None:
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("zcopy") == "zcopy.pytest_plugin"
