"""Child processes of a bench run: started in their own session, pinned, always reaped.

Every child gets ``ZCOPY_BENCH_RUN=<run id>`` in its environment, so anyone
(the tests) can find stray bench processes by scanning ``/proc/*/environ``;
``Children.close()`` kills each child's whole process group, so a child's own
children (a proxy's workers) go too.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

MARK_ENV = "ZCOPY_BENCH_RUN"


class ChildFailed(RuntimeError):
    """A child exited, timed out or said something unexpected; the message says which."""


class Child:
    """One child process with a line-oriented stdout and its stderr kept in a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        env: dict[str, str],
        cpu: int | None,
        eof_stops: bool = True,
        executable: str | None = None,
    ) -> None:
        self.name = name
        self.eof_stops = eof_stops
        self.err_path = workdir / f"{name}.stderr"
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                start_new_session=True, env=env, executable=executable,
            )
        self.pid = self.proc.pid
        self._buf = b""
        if cpu is not None:
            try:
                os.sched_setaffinity(self.pid, {cpu})
            except OSError:  # exited already: the next read reports it
                pass

    def read_line(self, timeout: float) -> str | None:
        """The next stdout line (``None`` at EOF); ``ChildFailed`` after ``timeout`` seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildFailed(f"{self.name} said nothing for {timeout:.0f}s{self.tail()}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace")

    def expect(self, prefix: str, timeout: float) -> str:
        """Read lines until one starts with ``prefix``; return the rest of it."""
        while True:
            line = self.read_line(timeout)
            if line is None:
                raise ChildFailed(f"{self.name} exited{self.status()}{self.tail()}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def wait_stderr(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until stderr has a line matching ``pattern`` (how ``zcopy proxy`` says ready)."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.err_path.read_text(errors="replace"))
            if m:
                return m
            if self.proc.poll() is not None:
                raise ChildFailed(f"{self.name} exited{self.status()}{self.tail()}")
            time.sleep(0.02)
        raise ChildFailed(f"{self.name} was not ready after {timeout:.0f}s{self.tail()}")

    def status(self) -> str:
        """`` with code N`` once the child has exited, else empty."""
        code = self.proc.poll()
        return "" if code is None else f" with code {code}"

    def tail(self, lines: int = 6) -> str:
        """The last lines of the child's stderr, ready to append to a message."""
        try:
            text = self.err_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return ("; its stderr ends:\n  " + "\n  ".join(text[-lines:])) if text else ""

    def close(self, grace: float = 5.0) -> None:
        """Close its stdin (a bench server's signal to exit), then TERM, then KILL its group."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        if self.eof_stops:
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)  # the child's own children (workers) too
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Children:
    """Every child of a pass; ``close()`` (or leaving the ``with``) ends them all, newest first."""

    def __init__(self, workdir: Path, run_id: str) -> None:
        self.workdir = workdir
        self.env = dict(os.environ, **{MARK_ENV: run_id})
        self.env.pop("ZCOPY_REQUIRE_ZERO_COPY", None)  # wrapped/naive must be allowed to fall back
        self._all: list[Child] = []

    def start(self, name: str, argv: Sequence[str], cpu: int | None = None,
              env: dict[str, str] | None = None, eof_stops: bool = True,
              executable: str | None = None) -> Child:
        """Start ``argv`` as a child named ``name`` (its stderr goes to ``workdir/name.stderr``).

        ``eof_stops``: the child exits when its stdin closes (bench servers do; strace and
        ``zcopy proxy`` get SIGTERM straight away). ``executable``: run this file with
        ``argv[0]`` as its name (what it shows of itself, e.g. in a flamegraph's title).
        """
        child = Child(name, argv, self.workdir, dict(self.env, **(env or {})), cpu, eof_stops,
                      executable)
        self._all.append(child)
        return child

    def close(self) -> None:
        """End every child, newest first (strace before its tracee, client before server)."""
        while self._all:
            self._all.pop().close()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bench_processes(run_id: str) -> list[int]:
    """Pids of live processes marked with ``run_id`` (the check the tests make).

    >>> bench_processes("no-such-run")
    []
    """
    needle = f"{MARK_ENV}={run_id}".encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read() + b"\0":
                    found.append(int(entry))
        except OSError:
            continue
    return found
