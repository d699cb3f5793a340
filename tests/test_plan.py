"""explain(): the route and a human reason for each pair; strict mode; FastPathWarning."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import SRC, JustReader, tcp_pair

import zcopy
from zcopy import Route

# Every test here must leave no fd behind; fallbacks are expected, not warned about.
pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]



@pytest.fixture
def src_file(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.write_bytes(b"x" * 100_000)
    return path


def test_file_to_tcp_is_sendfile(src_file: Path) -> None:
    a, b = tcp_pair()
    with a, b, open(src_file, "rb") as f:
        plan = zcopy.explain(a, f)
        assert plan.route is Route.SENDFILE and plan.zero_copy
        assert str(plan) == (
            f"sendfile: src is BufferedReader (a regular file (fd {f.fileno()})), "
            f"dst is a TCP socket (fd {a.fileno()})"
        )
        assert plan.routes == (Route.SENDFILE, Route.USERSPACE)


def test_file_to_file_is_copy_file_range(src_file: Path, tmp_path: Path) -> None:
    with open(src_file, "rb") as f, open(tmp_path / "d", "wb") as d:
        plan = zcopy.explain(d, f)
        assert plan.route is Route.COPY_FILE_RANGE
        assert str(plan).startswith("copy_file_range: src is BufferedReader (a regular file")
        assert "dst is BufferedWriter (a regular file" in str(plan)
        assert plan.routes == (Route.COPY_FILE_RANGE, Route.SENDFILE, Route.USERSPACE)


def test_tcp_to_tcp_is_splice_through_a_pipe() -> None:
    a, b = tcp_pair()
    c, d = tcp_pair()
    with a, b, c, d:
        plan = zcopy.explain(c, a)
        assert plan.route is Route.SPLICE
        assert str(plan) == (
            f"splice: src is a TCP socket (fd {a.fileno()}), "
            f"dst is a TCP socket (fd {c.fileno()}) (through a pipe)"
        )


def test_pipe_to_socket_is_splice_straight() -> None:
    r, w = os.pipe()
    s1, s2 = socket.socketpair()
    try:
        plan = zcopy.explain(s1, r)
        assert plan.route is Route.SPLICE
        assert str(plan).endswith("(straight between them)")
        assert "Unix stream socket" in str(plan)
    finally:
        for x in (r, w):
            os.close(x)
        s1.close()
        s2.close()


@pytest.mark.parametrize("buf", [b"abc", bytearray(b"abc"), memoryview(b"abc"), io.BytesIO(b"abc")])
def test_buffers_are_written(buf: object, tmp_path: Path) -> None:
    a, b = tcp_pair()
    with a, b, open(tmp_path / "d", "wb") as d:
        for dst in (a, d, io.BytesIO()):
            plan = zcopy.explain(dst, buf)
            assert plan.route is Route.WRITE and plan.zero_copy
            assert "written straight from memory" in str(plan)


def test_just_reader_falls_back_and_says_why(src_file: Path) -> None:
    a, b = tcp_pair()
    with a, b, open(src_file, "rb") as f:
        plan = zcopy.explain(a, JustReader(f))
        assert plan.route is Route.USERSPACE and not plan.zero_copy
        assert str(plan) == (
            "user space: src JustReader has no fileno() "
            "and does not implement the zcopy protocol (__zcopy__)"
        )
        assert plan.fallback_code == "src-opaque"


def test_explain_moves_nothing(src_file: Path) -> None:
    a, b = tcp_pair()
    with a, b, open(src_file, "rb") as f:
        f.seek(10)
        zcopy.explain(a, f)
        assert f.tell() == 10
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(1)


def test_explain_checks_count() -> None:
    with pytest.raises(ValueError):
        zcopy.explain(io.BytesIO(), b"x", -1)


# -- strict mode -------------------------------------------------------------------------------


def test_strict_raises_before_any_byte_moved(src_file: Path) -> None:
    a, b = tcp_pair()
    with a, b, open(src_file, "rb") as f:
        with pytest.raises(zcopy.FastPathLost) as info:
            zcopy.copy(a, JustReader(f), require_zero_copy=True)
        assert "JustReader has no fileno()" in info.value.reason
        assert f.tell() == 0
        a.shutdown(socket.SHUT_WR)
        assert b.recv(10) == b"", "the peer must receive nothing"


def test_strict_passes_on_a_fast_path(src_file: Path) -> None:
    a, b = tcp_pair()
    with a, b, open(src_file, "rb") as f:
        b.settimeout(10)
        assert zcopy.copy(a, f, 10, require_zero_copy=True) == 10


def test_strict_kernel_refusal_before_any_byte(tmp_path: Path) -> None:
    """/proc/self/status: sendfile is refused at the first call; strict mode stops there."""
    r, w = os.pipe()
    try:
        with open("/proc/self/status", "rb") as f, pytest.raises(zcopy.FastPathLost):
            zcopy.copy(w, f, require_zero_copy=True)
        os.set_blocking(r, False)
        with pytest.raises(BlockingIOError):
            os.read(r, 10)
    finally:
        os.close(r)
        os.close(w)


_STRICT_SNIPPET = """
import socket, zcopy
import io
class JustReader:
    def __init__(self): self.f = io.BytesIO(b"x" * 10)
    def read(self, n=-1): return self.f.read(n)
a, b = socket.socketpair()
try:
    zcopy.copy(a, JustReader())
except zcopy.FastPathLost as exc:
    a.close(); b.settimeout(10)
    assert b.recv(10) == b"", "peer received bytes"
    print("LOST", exc.reason)
else:
    print("COPIED")
"""


@pytest.mark.parametrize(("value", "expect"), [("1", "LOST"), ("0", "COPIED"), ("", "COPIED")])
def test_strict_from_environment(value: str, expect: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env[zcopy.STRICT_ENV] = value
    assert zcopy.STRICT_ENV == "ZCOPY_REQUIRE_ZERO_COPY"
    out = subprocess.run(
        [sys.executable, "-c", _STRICT_SNIPPET], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout
    assert out.startswith(expect)
    if expect == "LOST":
        assert "JustReader has no fileno()" in out


def test_explicit_false_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(zcopy.STRICT_ENV, "1")
    with pytest.raises(zcopy.FastPathLost):
        zcopy.copy(io.BytesIO(), JustReader(io.BytesIO(b"abc")))
    out = io.BytesIO()
    assert zcopy.copy(out, JustReader(io.BytesIO(b"abc")), require_zero_copy=False) == 3


# -- FastPathWarning ---------------------------------------------------------------------------

_WARN_SNIPPET = """
import io, warnings, zcopy
class JustReader:
    def read(self, n=-1): return b""
with warnings.catch_warnings(record=True) as log:
    {optin}
    zcopy.copy(io.BytesIO(), JustReader())
print(len([w for w in log if issubclass(w.category, zcopy.FastPathWarning)]))
"""


@pytest.mark.parametrize(
    ("optin", "count"),
    [("pass", "0"), ("warnings.simplefilter('default', zcopy.FastPathWarning)", "1")],
)
def test_fast_path_warning_is_opt_in(optin: str, count: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("PYTHONWARNINGS", None)
    out = subprocess.run(
        [sys.executable, "-c", _WARN_SNIPPET.format(optin=optin)], env=env,
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert out.strip() == count


def test_fast_path_warning_carries_the_reason() -> None:
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always", zcopy.FastPathWarning)
        zcopy.copy(io.BytesIO(), JustReader(io.BytesIO(b"abc")))
        zcopy.copy(io.BytesIO(), b"abc")  # the write route is not a fallback
    assert [str(w.message) for w in log] == [
        "user space: src JustReader has no fileno() "
        "and does not implement the zcopy protocol (__zcopy__)"
    ]
    assert log[0].filename == __file__, "the warning points at the caller"


def test_tls_socket_is_user_space(src_file: Path) -> None:
    """No kTLS: a TLS socket's bytes are encrypted in user space (no handshake needed to say so)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    raw = socket.socket()
    tls = ctx.wrap_socket(raw, do_handshake_on_connect=False, server_hostname="localhost")
    with tls, open(src_file, "rb") as f:
        plan = zcopy.explain(tls, f)
        assert plan.route is Route.USERSPACE
        assert "TLS socket" in str(plan)
        with pytest.raises(zcopy.FastPathLost):
            zcopy.copy(tls, f, require_zero_copy=True)
