"""The ``zcopy`` command as a user meets it: ``python -m zcopy``, ``--help``, missing extras."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zcopy import cli

SRC = Path(__file__).resolve().parents[1] / "src"


def zcopy(*args: str, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``python -m zcopy ARGS`` in a child process; ``block`` makes those modules unimportable."""
    prelude = "import sys, runpy\n"
    prelude += "".join(f"sys.modules[{name!r}] = None\n" for name in block)
    prelude += "sys.argv = ['zcopy', *sys.argv[1:]]\nrunpy.run_module('zcopy', run_name='__main__')"
    return subprocess.run(
        [sys.executable, "-c", prelude, *args], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
    )


def test_python_dash_m_zcopy_is_the_zcopy_command() -> None:
    direct = subprocess.run([sys.executable, "-m", "zcopy", "--version"], capture_output=True,
                            text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert direct.returncode == 0 and direct.stdout.strip() == "zcopy 0.1.0"
    bare = subprocess.run([sys.executable, "-m", "zcopy"], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert bare.returncode == 2
    assert bare.stdout.startswith("usage: zcopy") and "bench, serve, proxy, trace" in bare.stdout


def _options(command: str) -> list[argparse.Action]:
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices[command]._actions)


@pytest.mark.parametrize("command", list(cli.SUBCOMMANDS))
def test_every_help_shows_each_default_once(command: str) -> None:
    proc = zcopy(command, "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # argparse wraps lines: compare with spaces joined
    for action in _options(command):
        default = action.default
        if (action.help in (None, argparse.SUPPRESS) or default in (None, argparse.SUPPRESS)
                or isinstance(default, bool) or not action.option_strings):
            continue
        help_ = " ".join(str(action.help).split())
        start = text.index(help_[:30])
        said = text[start:start + len(help_) + 40]
        assert len(re.findall(r"\bdefault\b", said)) >= 1, (command, action.dest, said)
        # never "(default 10) (default 10)"
        assert said.count("default") == help_.count("default") + (
            0 if "default" in help_ else 1), (command, action.dest, said)


def test_serve_help_shows_its_port_and_bind_defaults() -> None:
    text = " ".join(zcopy("serve", "--help").stdout.split())
    assert "TCP port (0: any free one) (default 8000)" in text
    assert "address to listen on (default 127.0.0.1)" in text


@pytest.mark.parametrize(("command", "module", "extra"), [
    ("serve", "httptools", "serve"),
    ("bench", "rich", "bench"),
    ("bench", "matplotlib", "bench"),
])
def test_a_missing_extra_is_one_line_and_status_1(command: str, module: str, extra: str,
                                                  tmp_path: Path) -> None:
    args = (command, "--quick", "--out", str(tmp_path)) if command == "bench" else (command,)
    proc = zcopy(*args, block=(module,))
    assert proc.returncode == 1
    assert proc.stderr == f"zcopy {command} needs {module}: pip install 'zcopy[{extra}]'\n"
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not list(tmp_path.iterdir()), "nothing was started before the check"


def test_a_missing_module_that_is_no_extra_is_a_bug_and_shows_its_traceback() -> None:
    missing = ModuleNotFoundError("No module named 'zcopy.nope'", name="zcopy.nope")
    assert cli.missing_dependency("serve", missing) is None
    unrelated = ModuleNotFoundError("No module named 'numpy'", name="numpy")
    assert cli.missing_dependency("bench", unrelated) is None


def test_a_server_ignores_optional_signals_from_main_onwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """serve/proxy: SIGUSR1/SIGUSR2/SIGHUP are ignored before the subcommand is even imported,
    and the process's own dispositions come back when main() returns."""
    import signal

    monkeypatch.setitem(cli.SUBCOMMANDS, "serve", ("cli_probe", "probe"))
    monkeypatch.delitem(sys.modules, "cli_probe", raising=False)
    before = signal.getsignal(signal.SIGUSR1)
    assert cli.main(["serve"]) == 0
    import cli_probe

    assert cli_probe.AT_IMPORT is signal.SIG_IGN
    assert cli_probe.AT_RUN == [signal.SIG_IGN]
    assert signal.getsignal(signal.SIGUSR1) is before


def test_a_tool_keeps_the_dispositions_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """``zcopy trace CMD`` hands its dispositions to CMD: nothing is ignored for a tool."""
    import signal

    monkeypatch.setitem(cli.SUBCOMMANDS, "trace", ("cli_probe", "probe"))
    monkeypatch.delitem(sys.modules, "cli_probe", raising=False)
    old = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        # SIGUSR1 would end this process: give it a handler that counts instead.
        got: list[int] = []
        old_usr1 = signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
        try:
            assert cli.main(["trace"]) == 0
        finally:
            signal.signal(signal.SIGUSR1, old_usr1)
        import cli_probe

        assert cli_probe.AT_RUN == [signal.SIG_DFL] and got == [1]
    finally:
        signal.signal(signal.SIGHUP, old)


def _ignores_sigusr1(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    m = re.search(r"^SigIgn:\s*([0-9a-f]+)", status, re.M)
    return bool(m and int(m[1], 16) >> (10 - 1) & 1)  # SIGUSR1 is 10


def test_zcopy_serve_is_shielded_before_it_listens_and_survives_a_storm(tmp_path: Path) -> None:
    """A real ``zcopy serve``: SIGUSR1 is ignored before its socket exists (the old window was
    the whole startup), and a storm of SIGUSR1/SIGUSR2/SIGHUP from then on never kills it."""
    import selectors
    import signal
    import time

    from zcopy.tools._proc import fd_targets

    (tmp_path / "a.txt").write_bytes(b"a\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "zcopy", "serve", str(tmp_path), "--port", "0",
         "--no-access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(SRC)),
    )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 30
        while not _ignores_sigusr1(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "never shielded"
            time.sleep(0.0005)
        assert not any(t.startswith("socket:") for t in fd_targets(proc.pid)), (
            "SIGUSR1 was still fatal when the server already had its socket"
        )
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        sent = 0
        while not sel.select(0.002):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "never ready"
            os.kill(proc.pid, (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)[sent % 3])
            sent += 1
        sel.close()
        ready = proc.stdout.readline().decode()
        assert "http://127.0.0.1:" in ready and sent > 0
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0


def test_import_zcopy_leaves_asyncio_alone_until_acopy_is_used() -> None:
    """``import zcopy`` (and so the pytest plugin) does not pay for asyncio; acopy, relay
    and relay_plan are the real functions once asked for, also through ``from zcopy import``."""
    code = (
        "import sys, zcopy\n"
        "assert 'asyncio' not in sys.modules, 'asyncio imported by import zcopy'\n"
        "assert set(zcopy.__all__) <= set(dir(zcopy))\n"
        "from zcopy import acopy, relay_plan\n"
        "import zcopy._aio, zcopy._relay\n"
        "assert acopy is zcopy._aio.acopy and zcopy.relay is zcopy._relay.relay\n"
        "assert relay_plan is zcopy._relay.relay_plan\n"
        "try:\n"
        "    zcopy.nothing\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "module 'zcopy' has no attribute 'nothing'\n"
