"""zcopy.daemon: exclusive listening, supervised workers, signals, one log format.

The supervisor is driven as an operator would drive it: a real daemon in a
subprocess (a tiny server whose workers answer each connection with their pid),
signalled and killed from outside.
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

import pytest
from conftest import SRC

from zcopy import daemon
from zcopy.daemon.log import format_line
from zcopy.tools._proc import alive, children

# A daemon whose workers answer each connection with their pid. argv: mode, workers.
DEMO = r"""
import os, select, signal, sys, time
from zcopy import daemon
from zcopy.daemon import workers
workers.KILL_MARGIN = 0.3
mode, count = sys.argv[1], int(sys.argv[2])
daemon.setup_log("zcopy demo")
try:
    listener = daemon.listen("127.0.0.1", int(sys.argv[3]) if len(sys.argv) > 3 else 0)
except daemon.StartupError as exc:
    daemon.startup_failed("zcopy demo", str(exc))
    sys.exit(exc.status)

def main(sock, ready):
    if mode == "fail":
        raise daemon.StartupError("--thing /nonexistent: no such file or directory")
    stop = []
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    ready()
    if mode == "crash":  # a while after the daemon is up, every worker dies
        time.sleep(0.2)
        sys.exit(3)
    while not stop:
        if select.select([sock], [], [], 0.05)[0]:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                continue
            except OSError:  # EINVAL: the supervisor shut the listener down (stopping)
                time.sleep(0.05)
                continue
            conn.sendall(b"%d" % os.getpid())
            conn.close()
    return 0

port = listener.getsockname()[1]
if mode == "nproc":  # the kernel refuses fork: an unprivileged user at its process limit
    import resource
    os.setgid(65534)
    os.setuid(65534)
    resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
status = daemon.run("zcopy demo", listener, main, workers=count, grace=0.5,
                    on_ready=lambda: print(f"ready {port} {os.getpid()}", flush=True))
sys.exit(status)
"""


class Demo:
    """The demo daemon in a subprocess, with its ready line parsed."""

    def __init__(self, mode: str, workers: int, *extra: str, wait: bool = True) -> None:
        env = dict(os.environ, PYTHONPATH=str(SRC))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DEMO, mode, str(workers), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.port = 0
        if wait:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            m = re.fullmatch(r"ready (\d+) (\d+)\n", line)
            assert m, (line, self.finish())
            self.port = int(m[1])
            assert int(m[2]) == self.proc.pid

    def ask(self) -> int:
        """Which worker answered a fresh connection."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as c:
            c.settimeout(10)
            return int(c.recv(64))

    def workers(self) -> set[int]:
        """The daemon's live child processes."""
        return set(children(self.proc.pid))

    def finish(self, timeout: float = 20) -> tuple[int, str]:
        """Wait for the exit; return (status, stderr)."""
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, err

    def kill(self) -> None:
        for pid in self.workers() if self.proc.poll() is None else ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()


@contextlib.contextmanager
def demo(mode: str, workers: int, *extra: str) -> Iterator[Demo]:
    d = Demo(mode, workers, *extra)
    try:
        yield d
    finally:
        d.kill()


def wait_until(cond: object, timeout: float = 10) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def gone(pid: int) -> bool:
    return not alive(pid)


# --- listen -----------------------------------------------------------------------------


def test_listen_is_exclusive_even_against_reuseport() -> None:
    with daemon.listen("127.0.0.1", 0) as first:
        port = first.getsockname()[1]
        assert first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        with pytest.raises(daemon.StartupError) as info:
            daemon.listen("127.0.0.1", port)
        assert info.value.status == 1 and "address already in use" in str(info.value)
        # A hijacker that asks for SO_REUSEPORT cannot join: the group needs both to ask.
        with socket.socket() as thief:
            thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with pytest.raises(OSError, match="in use"):
                thief.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("host", "port", "status", "words"),
    [
        ("127.0.0.1", 99999, 2, "out of range"),
        ("127.0.0.1", -1, 2, "out of range"),
        ("999.1.1.1", 8000, 2, "not a valid address"),
        ("192.0.2.1", 0, 1, "cannot assign requested address"),
    ],
)
def test_listen_errors_are_one_line_with_a_status(
    host: str, port: int, status: int, words: str
) -> None:
    with pytest.raises(daemon.StartupError) as info:
        daemon.listen(host, port)
    assert info.value.status == status
    assert words in str(info.value) and "\n" not in str(info.value)


def test_listen_ipv6_and_all_interfaces() -> None:
    with daemon.listen("", 0) as s:
        assert s.getsockname()[0] == "0.0.0.0"
    if socket.has_ipv6:
        with contextlib.suppress(daemon.StartupError), daemon.listen("::1", 0) as s6:
            assert s6.family == socket.AF_INET6


def test_fd_limit_is_raised_never_lowered() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        assert daemon.raise_fd_limit(8) == soft  # already above: untouched
        want = min(soft + 10, hard) if hard != resource.RLIM_INFINITY else soft + 10
        assert daemon.raise_fd_limit(want) == want
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == want
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_one_log_format() -> None:
    line = format_line("zcopy proxy", "stopped", time.time(), 42)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d zcopy proxy\[42\]: stopped", line)


# --- workers ------------------------------------------------------------------------------


def test_both_workers_serve_on_one_socket() -> None:
    with demo("serve", 2) as d:
        kids = d.workers()
        assert len(kids) == 2
        # The kernel wakes every worker waiting on the shared socket; stopping one in
        # turn proves each one can take connections by itself.
        for busy in kids:
            os.kill(busy, signal.SIGSTOP)
            try:
                assert {d.ask() for _ in range(3)} == kids - {busy}
            finally:
                os.kill(busy, signal.SIGCONT)
        # And the daemon holds the port: a second one on it fails, one line, status 1.
        second = Demo("serve", 2, str(d.port), wait=False)
        status, err = second.finish()
        assert status == 1
        assert err.strip().splitlines() == [
            f"zcopy demo: cannot listen on 127.0.0.1:{d.port}: address already in use "
            "(another server is listening there)"
        ]
        os.kill(d.proc.pid, signal.SIGTERM)
        status, err = d.finish()
        assert status == 0, err
        assert re.search(r"\d\d:\d\d:\d\d zcopy demo\[\d+\]: SIGTERM: stopping 2 worker", err)
        assert all(gone(k) for k in kids)


def test_stopping_shuts_the_shared_socket_for_every_worker() -> None:
    with demo("stubborn", 2) as d:  # workers that ignore SIGTERM keep their copy open
        os.kill(d.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", d.port), timeout=5).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting while stopping"
            time.sleep(0.02)
        d.finish()


def test_a_dead_worker_is_reported_and_replaced() -> None:
    with demo("serve", 2) as d:
        kids = d.workers()
        victim = min(kids)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(d.workers()) == 2 and victim not in d.workers())
        fresh = d.workers() - kids
        assert len(fresh) == 1
        survivor = (kids - {victim}).pop()
        os.kill(survivor, signal.SIGSTOP)  # so the new worker must answer
        try:
            assert d.ask() == fresh.pop()
        finally:
            os.kill(survivor, signal.SIGCONT)
        os.kill(d.proc.pid, signal.SIGTERM)
        status, err = d.finish()
        assert status == 0
        assert f"worker {victim} was killed by SIGKILL; starting a new one" in err


def test_workers_that_keep_dying_stop_the_daemon() -> None:
    d = Demo("crash", 2)
    status, err = d.finish()
    assert status == 1
    assert "workers died within" in err and "stopping" in err


def test_a_worker_startup_error_is_one_line_and_its_status() -> None:
    d = Demo("fail", 2, wait=False)
    status, err = d.finish()
    assert status == 1
    lines = err.strip().splitlines()
    assert "zcopy demo: --thing /nonexistent: no such file or directory" in lines
    assert "Traceback" not in err


def test_stragglers_are_killed_after_the_grace_period() -> None:
    with demo("stubborn", 2) as d:
        kids = d.workers()
        start = time.monotonic()
        os.kill(d.proc.pid, signal.SIGTERM)
        status, err = d.finish()
        assert status == 1
        assert time.monotonic() - start < 10  # grace 0.5 + margin 0.3
        assert "after the grace period: killing them" in err
        assert all(gone(k) for k in kids)


def test_workers_die_with_a_killed_parent() -> None:
    with demo("serve", 2) as d:
        kids = d.workers()
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait(10)
        wait_until(lambda: all(gone(k) for k in kids))


def test_sigterm_racing_startup_is_never_lost() -> None:
    """SIGTERM at once, many times over: every run ends, none hangs or leaves a worker."""
    for _ in range(10):
        d = Demo("serve", 2, wait=False)
        time.sleep(0.05)
        d.proc.send_signal(signal.SIGTERM)
        status, err = d.finish(timeout=15)
        assert status in (0, -signal.SIGTERM), err


def test_signals_not_forwarded_are_ignored_by_the_parent() -> None:
    """SIGUSR1/SIGUSR2/SIGHUP kill neither the supervisor nor (unasked) its workers."""
    with demo("serve", 2) as d:
        kids = d.workers()
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            os.kill(d.proc.pid, sig)
        time.sleep(0.3)
        assert d.proc.poll() is None and d.workers() == kids
        assert d.ask() in kids


def test_a_single_worker_ignores_signals_it_does_not_handle() -> None:
    """Without a supervisor the server is the process: SIGUSR1 must not kill it."""
    with demo("serve", 1) as d:
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            os.kill(d.proc.pid, sig)
        time.sleep(0.3)
        assert d.proc.poll() is None
        assert d.ask() == d.proc.pid


def test_a_worker_ignores_signals_sent_to_it_that_it_does_not_handle() -> None:
    with demo("serve", 2) as d:
        kids = d.workers()
        for pid in kids:
            for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
                os.kill(pid, sig)
        time.sleep(0.3)
        assert d.workers() == kids and all(alive(pid) for pid in kids)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_a_refused_fork_is_one_line_and_status_1() -> None:
    d = Demo("nproc", 2, wait=False)
    status, err = d.finish()
    assert status == 1
    assert "cannot start a worker: Resource temporarily unavailable; stopping" in err
    assert "Traceback" not in err
