"""``zcopy serve`` as an operator starts it: startup errors, the ready line, the logs, workers.

Every startup error is one line on stderr and exit status 2 (usage) or 1, never a
traceback, with one worker or several; the port is exclusive.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_util import ServeProc, get, wait_for

from zcopy.tools._proc import children

SRC = Path(__file__).resolve().parents[1] / "src"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d zcopy serve\[\d+\]: "


def serve_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(
        [sys.executable, "-m", "zcopy.serve", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_bytes(b"a\n")
    return tmp_path


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    *usage, last = stderr.splitlines()  # argparse shows the usage block before its line
    assert not usage or usage[0].startswith("usage: zcopy serve"), stderr
    return last


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("args", "status", "line"),
    [
        (("--port", "99999"), 2, "zcopy serve: error: argument --port/-p: '99999': port must be "
                                 "0-65535"),
        (("--bind", "999.1.1.1", "--port", "0"), 2,
         "zcopy serve: cannot listen on 999.1.1.1:0: '999.1.1.1' is not a valid address or "
         "host name (Name or service not known)"),
        (("--port", "0", "--small-body", "262145"), 2,
         "zcopy serve: --small-body 262145: at most 262144 (longer bodies are sent corked, by "
         "sendfile)"),
        (("--port", "0", "--small-body", "-1"), 2,
         "zcopy serve: error: argument --small-body: '-1': must be >= 0"),
        (("--port", "0", "--access-log", "/nonexistent/dir/log"), 1,
         "zcopy serve: --access-log /nonexistent/dir/log: no such file or directory"),
        (("--bind", "192.0.2.1", "--port", "0"), 1,
         "zcopy serve: cannot listen on 192.0.2.1:0: cannot assign requested address "
         "(no interface of this machine has that address)"),
    ],
)
def test_startup_errors_are_one_line_and_a_status(
    site: Path, workers: str, args: tuple[str, ...], status: int, line: str
) -> None:
    done = serve_cli(str(site), "--workers", workers, *args)
    assert done.returncode == status, done.stderr
    assert _error_line(done.stderr) == line
    assert done.stdout == ""  # no ready line: it never served


def test_not_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    done = serve_cli(str(tmp_path / "missing"), "--port", "0")
    assert done.returncode == 2
    assert _error_line(done.stderr) == f"zcopy serve: {tmp_path / 'missing'} is not a directory"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use_fails_and_the_first_server_keeps_it(site: Path, workers: str) -> None:
    with ServeProc(site, "--workers", workers) as first:
        done = serve_cli(str(site), "--port", str(first.port), "--workers", workers)
        assert done.returncode == 1
        assert _error_line(done.stderr) == (
            f"zcopy serve: cannot listen on 127.0.0.1:{first.port}: address already in use "
            "(another server is listening there)"
        )
        for _ in range(8):  # nobody took part of the traffic
            assert get(first.port, "/a.txt").body == b"a\n"
        assert first.stop() == 0


class Serve:
    """``zcopy serve`` with its stdout and stderr collected to files (no --access-log)."""

    def __init__(self, root: Path, *args: str) -> None:
        self.dir = root.parent
        self.out = open(root.parent / "out.txt", "wb")  # noqa: SIM115
        self.err = open(root.parent / "err.txt", "wb")  # noqa: SIM115
        env = dict(os.environ, PYTHONPATH=str(SRC))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zcopy.serve", str(root), "--port", "0", *args],
            stdout=self.out, stderr=self.err, env=env,
        )
        wait_for(lambda: "press Ctrl+C" in self.stdout(), what="the ready line")
        m = re.search(r"http://127\.0\.0\.1:(\d+)/ \(pid (\d+)", self.stdout())
        assert m, self.stdout()
        self.port = int(m[1])
        assert int(m[2]) == self.proc.pid

    def stdout(self) -> str:
        return (self.dir / "out.txt").read_text()

    def stderr(self) -> str:
        return (self.dir / "err.txt").read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # as Ctrl+C
        try:
            return self.proc.wait(20)
        finally:
            self.out.close()
            self.err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()
        self.err.close()


@contextlib.contextmanager
def serving(root: Path, *args: str) -> Iterator[Serve]:
    s = Serve(root, *args)
    try:
        yield s
    finally:
        s.kill()


def test_ready_line_and_an_access_line_per_request_on_stderr_by_default(site: Path) -> None:
    with serving(site) as s:
        assert re.fullmatch(
            STAMP + rf"serving {re.escape(str(site))} on http://127\.0\.0\.1:{s.port}/ "
            rf"\(pid {s.proc.pid}, 1 worker\); press Ctrl\+C to stop\n",
            s.stdout(),
        )
        for _ in range(3):
            assert get(s.port, "/a.txt", {"User-Agent": "curl/8"}).status == 200
        assert get(s.port, "/missing").status == 404
        wait_for(lambda: s.stderr().count('"GET ') == 4, what="four access lines")
        assert s.stop() == 0
    lines = s.stderr().splitlines()
    access = [ln for ln in lines if '"GET ' in ln]
    assert len(access) == 4
    assert re.fullmatch(
        r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /a\.txt HTTP/1\.1" '
        r'200 2 "-" "curl/8"', access[0])
    assert ' "GET /missing HTTP/1.1" 404 ' in access[3]
    # Everything else on stderr is in the one daemon format.
    assert all(re.match(STAMP, ln) for ln in lines if ln not in access), lines


def test_no_access_log(site: Path) -> None:
    with serving(site, "--no-access-log") as s:
        assert get(s.port, "/a.txt").status == 200
        time.sleep(1.5)  # past the once-a-second flush
        assert s.stop() == 0
    assert '"GET ' not in s.stderr()


def test_access_log_and_no_access_log_exclude_each_other(site: Path) -> None:
    done = serve_cli(str(site), "--no-access-log", "--access-log", "x.log")
    assert done.returncode == 2
    assert "not allowed with argument" in _error_line(done.stderr)


def test_workers_log_to_one_file_and_share_one_socket(site: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with serving(site, "--workers", "2", "--access-log", str(log)) as s:
        listening = [ln for ln in Path("/proc/net/tcp").read_text().splitlines()
                     if f":{s.port:04X} 00000000:0000 0A" in ln]
        assert len(listening) == 1  # one socket for both workers, no SO_REUSEPORT group
        for _ in range(20):
            assert get(s.port, "/a.txt").status == 200
        assert s.stop() == 0  # SIGINT: the workers flush their logs and exit
    lines = log.read_text().splitlines()
    assert len(lines) == 20 and all('"GET /a.txt HTTP/1.1" 200 2 ' in ln for ln in lines)
    assert "2 workers); press Ctrl+C to stop" in s.stdout()
    assert "accept failed" not in s.stderr()  # the shared socket is shut only after they stop


def test_a_killed_worker_is_replaced(site: Path) -> None:
    with serving(site, "--workers", "2") as s:
        kids = set(children(s.proc.pid))
        victim = kids.pop()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: f"worker {victim} was killed by SIGKILL; starting a new one"
                 in s.stderr(), what="the supervisor's report")
        for _ in range(10):
            assert get(s.port, "/a.txt").status == 200
        assert s.stop() == 0


def test_import_is_light() -> None:
    """``zcopy.serve`` (and the planner ``zcopy.asgi`` imports) never pull in httptools."""
    code = ("import sys, zcopy.serve, zcopy.serve.plan; "
            "print(sorted(m for m in ('httptools', 'zcopy.serve.server') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=30)
    assert out.stdout.strip() == "[]", out.stderr


def test_port_zero_listens_on_a_free_port(site: Path) -> None:
    with serving(site, "--no-access-log") as s, socket.create_connection(
        ("127.0.0.1", s.port), timeout=5
    ):
        pass


def test_the_small_body_limits_match_the_servers() -> None:
    """serve/__init__.py cannot import the server module (heavy): its copies must agree."""
    from zcopy.serve import SMALL_BODY, SMALL_BODY_MAX, server

    assert (SMALL_BODY, SMALL_BODY_MAX) == (server.SMALL_BODY, server.CORK_MIN)
