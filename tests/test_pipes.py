"""The splice pipe pool: reused, raised, discarded when dirty, dropped across fork, never leaked."""

from __future__ import annotations

import fcntl
import gc
import os
import socket
import stat
from collections.abc import Iterator

import pytest
from conftest import Drain, run_in_threads, start_feeding, tcp_pair

import zcopy
from zcopy import _pipes

DATA = os.urandom(300 * 1024)


@pytest.fixture(autouse=True)
def _empty_pool(no_fd_leak: None) -> Iterator[None]:
    _drain_pool()
    yield
    _drain_pool()


def _drain_pool() -> None:
    while _pipes.idle_count():
        _pipes.acquire().close()


def pipe_fds() -> set[int]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISFIFO(os.stat(f"/proc/self/fd/{name}").st_mode):
                found.add(int(name))
        except OSError:
            pass
    return found


def relay_once(data: bytes = DATA) -> None:
    """One TCP -> TCP copy (splice through a pooled pipe), content checked."""
    a, feed = tcp_pair()
    c, d = tcp_pair()
    with a, feed, c, d:
        feeder = start_feeding(feed, data)
        drain = Drain(d)
        assert zcopy.copy(c, a) == len(data)
        c.shutdown(socket.SHUT_WR)
        assert drain.result(30) == data
        feeder.join(30)


def test_pool_reuse() -> None:
    relay_once()
    assert _pipes.idle_count() == 1
    pooled = _pipes._idle[0]
    fds = (pooled.r, pooled.w)
    relay_once()
    assert _pipes.idle_count() == 1
    assert _pipes._idle[0] is pooled and (pooled.r, pooled.w) == fds


def test_pipe_size_is_raised() -> None:
    want = min(1 << 20, int(open("/proc/sys/fs/pipe-max-size").read()))  # noqa: SIM115
    pipe = _pipes.acquire()
    try:
        assert fcntl.fcntl(pipe.w, fcntl.F_GETPIPE_SZ) == pipe.size == want
        assert want > 65536, "the kernel default would not count as raised"
        flags = fcntl.fcntl(pipe.r, fcntl.F_GETFD)
        assert flags & fcntl.FD_CLOEXEC
    finally:
        pipe.close()


def test_pipe_with_bytes_after_an_error_is_discarded() -> None:
    a, feed = tcp_pair()
    c, d = tcp_pair()
    with a, feed, c, d:
        feed.sendall(DATA[:50_000])
        c.shutdown(socket.SHUT_WR)  # any write to c now fails with EPIPE
        before = pipe_fds()
        with pytest.raises(BrokenPipeError) as info:
            zcopy.copy(c, a)
        assert info.value.bytes_copied == 0  # type: ignore[attr-defined]
        assert _pipes.idle_count() == 0, "a pipe holding bytes went back to the pool"
        assert pipe_fds() == before, "the dirty pipe was not closed"
    # The pool is clean: the next copy carries only its own bytes.
    relay_once(DATA[:1000])


def test_empty_pipe_after_an_error_is_pooled() -> None:
    """A source that fails before any byte entered the pipe leaves it clean: it is reused."""
    relay_once()
    assert _pipes.idle_count() == 1
    a, b = tcp_pair()
    with a, b:
        a.settimeout(0.2)  # nothing arrives: TimeoutError while the pipe is empty
        with pytest.raises(TimeoutError):
            zcopy.copy(b, a)
    assert _pipes.idle_count() == 1


def test_pool_keeps_at_most_max_idle_and_closes_the_rest() -> None:
    pipes = [_pipes.acquire() for _ in range(_pipes._MAX_IDLE + 1)]
    assert len({id(p) for p in pipes}) == len(pipes)
    for p in pipes:
        _pipes.release(p)
    assert _pipes.idle_count() == _pipes._MAX_IDLE
    [closed] = [p for p in pipes if p.r == -1]
    assert closed.fds == [] and closed not in _pipes._idle


def test_discard_closes_even_a_clean_pipe() -> None:
    pipe = _pipes.acquire()
    fds = list(pipe.fds)
    _pipes.discard(pipe)
    assert (pipe.r, pipe.w, pipe.fds) == (-1, -1, [])
    assert _pipes.idle_count() == 0
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_closing_a_pipe_whose_fd_someone_else_closed_is_quiet() -> None:
    """An fd closed behind the pipe's back (EBADF on close) is forgotten, never closed twice."""
    pipe = _pipes.Pipe()
    r, w = pipe.r, pipe.w
    os.close(r)
    pipe.close()
    assert (pipe.r, pipe.w, pipe.fds) == (-1, -1, [])
    with pytest.raises(OSError):
        os.fstat(w)
    pipe.close()  # twice: nothing left to close

def test_a_pipe_nobody_references_closes_its_fds() -> None:
    """What a raising signal handler leaves behind (a pipe in a dropped local) leaks nothing."""
    pipe = _pipes.Pipe()
    fds = list(pipe.fds)
    del pipe
    gc.collect()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_fork_child_does_not_reuse_parent_pipes() -> None:
    relay_once()
    assert _pipes.idle_count() == 1
    parent = _pipes._idle[0]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, then leave without running any test machinery
        code = 0
        try:
            if _pipes.idle_count() != 0:
                code = 1
            for fd in (parent.r, parent.w):
                try:
                    os.fstat(fd)
                    code = 2  # the parent's pipe is still open here
                except OSError:
                    pass
            fresh = _pipes.acquire()
            if fresh is parent:
                code = 3
            fresh.close()
        finally:
            os.write(w, bytes([code]))
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"\x00"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert _pipes.idle_count() == 1 and _pipes._idle[0] is parent
    os.fstat(parent.r)  # still the parent's


def test_no_pipe_leak_after_many_copies() -> None:
    before = pipe_fds()
    for _ in range(100):
        relay_once(DATA[:5000])

    def worker(_thread: int) -> None:
        for _ in range(10):
            relay_once(DATA[:20_000])

    run_in_threads(worker, 24)
    idle = _pipes.idle_count()
    assert 1 <= idle <= _pipes._MAX_IDLE
    assert len(pipe_fds() - before) == 2 * idle, "only pooled pipes may stay open"
