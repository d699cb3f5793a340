"""A small pool of kernel pipes for splice: raised once, reused, never shared across fork."""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading
from itertools import chain

_WANT = 1 << 20
_MAX_IDLE = 16


def _max_size() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size", "rb") as f:
            return min(_WANT, int(f.read()))
    except (OSError, ValueError):  # pragma: no cover - no readable /proc (a sandbox); import time
        return _WANT


class Pipe:
    """A pipe for splice; ``fds`` is the truth about which of its fds are open.

    A signal handler that raises right after ``pipe2()`` returned, or while a
    route holds the pipe in a local, cannot leak its fds: they are stored from
    C (as in ``_transfer``) and a pipe nobody references closes itself.
    """

    __slots__ = ("fds", "r", "size", "w")

    def __init__(self) -> None:
        self.r = self.w = -1
        self.fds: list[int] = []
        self.fds.extend(chain.from_iterable(map(os.pipe2, (os.O_CLOEXEC,))))
        self.r, self.w = self.fds
        try:
            # Past the per-user pipe budget (pipe-user-pages-soft) this fails or
            # the kernel hands out a single page; F_GETPIPE_SZ tells the truth.
            fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, _TARGET)
        except OSError:  # pragma: no cover - never refused to root (CAP_SYS_RESOURCE), as in CI
            pass
        self.size = fcntl.fcntl(self.w, fcntl.F_GETPIPE_SZ)

    def close(self) -> None:
        # Forget the fds first: an interrupted close may leak one, never close it twice
        # (by then its number may belong to another file).
        fds, self.fds = self.fds, []
        self.r = self.w = -1
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        if getattr(self, "fds", None):  # unset if __init__ itself was cut short
            self.close()


_TARGET = _max_size()
_idle: list[Pipe] = []
_lock = threading.Lock()


def acquire() -> Pipe:
    with _lock:
        if _idle:
            return _idle.pop()
    return Pipe()


def unread(pipe: Pipe) -> int:
    """Bytes sitting in the pipe, as the kernel counts them (FIONREAD).

    >>> p = acquire(); os.write(p.w, b"abc"), unread(p)
    (3, 3)
    >>> before = idle_count(); release(p); idle_count() == before, p.r  # closed, not pooled
    (True, -1)
    """
    return int(struct.unpack("i", fcntl.ioctl(pipe.r, termios.FIONREAD, b"\0\0\0\0"))[0])


def release(pipe: Pipe) -> None:
    """Return a pipe to the pool if the kernel says it is empty, else close it.

    The route's own count of what the pipe holds is not trusted: a signal
    handler that raised between a splice and its bookkeeping would leave bytes
    behind, and they must never reach another copy.
    """
    if pipe.r < 0:
        return  # closed already (a release repeated after a raise): nothing to pool
    if unread(pipe):
        pipe.close()
        return
    with _lock:
        if any(idle is pipe for idle in _idle):
            return  # pooled already: twice, one pipe would serve two copies and mix them
        if len(_idle) < _MAX_IDLE:
            _idle.append(pipe)
            return
    pipe.close()


def discard(pipe: Pipe) -> None:
    """Close a pipe that may still hold bytes: they must never reach another copy."""
    pipe.close()


def idle_count() -> int:
    with _lock:
        return len(_idle)


def _after_fork_in_child() -> None:  # pragma: no cover - the child leaves by os._exit, unmeasured
    # Tested by tests/test_pipes.py::test_fork_child_does_not_reuse_parent_pipes, in the child.
    # A pooled pipe shared by parent and child would interleave their bytes.
    global _lock
    _lock = threading.Lock()
    while _idle:
        _idle.pop().close()


os.register_at_fork(after_in_child=_after_fork_in_child)
