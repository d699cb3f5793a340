"""Fixtures that build real files, pipes and sockets, and witnesses that watch from outside."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

import zcopy
from zcopy import _pipes
from zcopy.tools import bpftrace, strace

SRC = Path(__file__).resolve().parents[1] / "src"

# .ci/run measures coverage of this pytest process from its start (COVERAGE_PROCESS_START);
# the processes the tests start are measured objects (strace counts their syscalls, a bench
# times them), never coverage's: they must not inherit it.
os.environ.pop("COVERAGE_PROCESS_START", None)


def open_fds() -> set[int]:
    """This process's open fds, minus the idle pipes zcopy pools on purpose."""
    pooled = {fd for p in list(_pipes._idle) for fd in (p.r, p.w)}
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue  # the listing's own directory fd, closed by now
        found.add(int(name))
    return found - pooled


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fail the test if it leaves an fd open (compares /proc/self/fd before and after)."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    if leaked:  # collect only when needed: a full gc per test is most of a fast test's cost
        gc.collect()
        leaked = open_fds() - before
    details = {}
    for fd in leaked:
        try:
            details[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    assert not details, f"fds leaked: {details}"


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class JustReader:
    """A source with nothing but read(): no fileno(), so only the user-space route can move it.

    ``source`` is the bytes to hand out, or any object with read() (a file, a BytesIO).
    """

    def __init__(self, source: bytes | _Readable = b"") -> None:
        self.source: _Readable = io.BytesIO(source) if isinstance(source, bytes) else source

    def read(self, n: int = -1) -> bytes:
        return self.source.read(n)


class Blob:
    """A file of random bytes on disk, with its content hash."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.data = data
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()


def copy_by(driver: str, dst: object, src: object) -> int:
    """Copy with ``zcopy.copy`` (``driver="copy"``) or ``zcopy.acopy`` (any other), 30 s at most.

    >>> import io; copy_by("acopy", io.BytesIO(), b"abc")
    3
    """
    if driver == "copy":
        return zcopy.copy(dst, src)
    return asyncio.run(asyncio.wait_for(zcopy.acopy(dst, src), 30))


@pytest.fixture
def src_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A file holding the requesting test module's ``DATA``."""
    path = tmp_path / "src"
    path.write_bytes(request.module.DATA)
    return path


@pytest.fixture
def make_blob(tmp_path: Path) -> Callable[..., Blob]:
    counter = iter(range(1_000_000))

    def make(size: int, name: str | None = None) -> Blob:
        path = tmp_path / (name or f"blob{next(counter)}.bin")
        data = os.urandom(size)
        path.write_bytes(data)
        return Blob(path, data)

    return make


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected pair of TCP sockets on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname(), timeout=10)
        peer, _ = server.accept()
    client.settimeout(None)
    return client, peer


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(out, peer): a TCP pair on 127.0.0.1 for copies, both ends with a 10 s timeout so a
    test that reads what it expects never hangs (a module may define its own ``pair``)."""
    with socket.create_server(("127.0.0.1", 0)) as lst:
        out = socket.create_connection(lst.getsockname(), timeout=10)
        peer, _ = lst.accept()
    peer.settimeout(10)
    with out, peer:
        yield out, peer


@pytest.fixture
def tcp() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = tcp_pair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def start_feeding(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send ``data`` on ``sock`` from a started thread, then shut its write side (EOF).

    A send cut short by the peer (a test that resets the connection to end it)
    ends the thread quietly: the reader's byte check is what fails, if anything.
    """

    def run() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def run_in_threads(work: Callable[[int], None], count: int, timeout: float = 60) -> None:
    """Run ``work(0)`` ... ``work(count - 1)`` at once, one thread each; raise what any raised.

    Every thread must finish within ``timeout`` seconds: a hang is a failure, not a wait.
    """
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in pool:
        t.start()
    deadline = time.monotonic() + timeout
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in pool), f"threads still running after {timeout:g}s"
    if errors:
        raise errors[0]


class Drain:
    """Read a socket or fd to EOF in a thread; the result is the bytes seen."""

    def __init__(self, source: socket.socket | int) -> None:
        self.source = source
        self.chunks: list[bytes] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                if isinstance(self.source, socket.socket):
                    data = self.source.recv(1 << 20)
                else:
                    data = os.read(self.source, 1 << 20)
                if not data:
                    return
                self.chunks.append(data)
        except BaseException as exc:
            self.error = exc

    def result(self, timeout: float = 60) -> bytes:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "reader did not see EOF in time"
        if self.error:
            raise self.error
        return b"".join(self.chunks)


def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``, as GitHub Actions and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_witness(tool: str, why_not: str | None) -> None:
    """Stop a test whose outside witness (``tool``) cannot run: a skip here, a failure in CI.

    A developer's machine without ptrace or eBPF skips with the reason; CI
    (``CI=true``) installs both tracers (.ci/run), so a proof that cannot run
    there fails instead of quietly vanishing.
    """
    if why_not is None:
        return
    if in_ci():
        pytest.fail(f"{tool} proof cannot run in CI: {why_not}", pytrace=False)
    pytest.skip(f"{tool}: {why_not}")


def require_strace() -> None:
    """Call first in any test whose claim rests on strace (or ask for ``strace_proof``)."""
    require_witness("strace", strace.unavailable_reason())


def require_bpftrace() -> None:
    """Call first in any test whose claim rests on the bpftrace backend."""
    require_witness("bpftrace", bpftrace.unavailable_reason())


@pytest.fixture
def strace_proof() -> None:
    """Ask for this in a test that proves a route with strace (see ``require_strace``)."""
    require_strace()


# For run_traced snippets: ``a`` is a TCP socket whose peer ``b`` a thread drains; after
# ``a.shutdown(socket.SHUT_WR); t.join()``, ``got[0]`` is the bytes the peer received.
# (No braces: snippets that use it are ``str.format`` templates.)
DRAINED_TCP = """
import socket, threading, zcopy
server = socket.create_server(("127.0.0.1", 0))
a = socket.create_connection(server.getsockname())
b, _ = server.accept()
got = []
def drain():
    n = 0
    while chunk := b.recv(1 << 20):
        n += len(chunk)
    got.append(n)
t = threading.Thread(target=drain); t.start()
"""


def run_traced(code: str, tmp_path: Path, *, timeout: float = 240) -> list[strace.Call]:
    """Run a Python snippet under strace and return the data-path syscalls it made.

    The witness is outside the process: the kernel's view through ptrace,
    not zcopy's own counters.
    """
    require_strace()
    out = tmp_path / "strace.out"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.run(
        [*strace.command(str(out)), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, f"traced snippet failed:\n{proc.stdout}\n{proc.stderr}"
    return strace.parse_lines(out.read_text().splitlines())


def calls_on(
    calls: list[strace.Call], name: str, path_part: str | None = None
) -> list[strace.Call]:
    """The calls named ``name`` with an fd whose annotation contains ``path_part``."""
    found = []
    for c in calls:
        if c.name != name:
            continue
        if path_part is None or any(path_part in what for _, what in c.fds):
            found.append(c)
    return found
