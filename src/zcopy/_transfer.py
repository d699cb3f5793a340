"""The state one copy carries through its route, and the shared route contract.

Every route is a generator ``pump(t: Transfer) -> Generator[Wait, None, None]``: it moves
bytes with non-blocking-safe syscalls, yields a ``Wait`` when the kernel says
EAGAIN, and either finishes (``t.moved`` is the truth) or raises
``NotHandled`` having consumed nothing it did not deliver. The same generator
is driven by ``copy()`` (poll) and ``acopy()`` (the asyncio loop).

A syscall that delivers bytes to dst runs as ``t.box.extend(map(call, ...))``:
``map`` calls it from C and ``list.extend`` stores its result before any
bytecode runs, so a Python signal handler that raises right after the kernel
returned (CPython runs handlers between bytecodes) cannot lose the count.
``settle()`` then accounts for what the box holds; the job settles once more
on every exit, so a result stored but not yet accounted for is never lost.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

from ._endpoint import Endpoint
from ._objects import write_some


class Wait(NamedTuple):
    fd: int
    write: bool  # wait until writable (else readable)
    timeout: float | None  # None: no limit (blocking or non-blocking endpoint)
    what: str


# errno values with which the kernel refuses a route for this pair of fds, on
# its first call, before any byte moved (as Go's internal/poll tells "not
# supported" from a failure): the next route of the plan is tried.
REFUSED = frozenset({
    errno.EINVAL,  # this fd has no splice/sendfile support (procfs, some char devices), bad flags
    errno.ENOSYS,  # the syscall is not in this kernel (copy_file_range before 4.5, seccomp)
    errno.EOPNOTSUPP,  # the filesystem or socket family does not implement the operation
    errno.EXDEV,  # copy_file_range across filesystems of different types (5.19+)
    errno.EBADF,  # an fd the kernel cannot use this way (an O_PATH fd, the wrong access mode)
    errno.ESPIPE,  # an offset was given for an fd that cannot seek
})

# The largest single sendfile/copy_file_range request (Linux caps at 2 GiB - 4 KiB).
BIG = 1 << 30


class Transfer:
    """One copy's running state: what moved, what is left, where the source is read.

    ``kernel`` is where the routes find their syscalls (``os`` unless a test
    passes a table that fails on cue); ``bufsize`` sizes the user-space route's
    buffer (None: its default).
    """

    __slots__ = (
        "box", "bufsize", "dst", "kernel", "moved", "observers", "offset", "remaining", "src",
        "start", "syscalls",
    )

    def __init__(
        self,
        src: Endpoint,
        dst: Endpoint,
        remaining: int | None,
        offset: int | None,
        kernel: Any = os,
        bufsize: int | None = None,
    ):
        self.src = src
        self.dst = dst
        self.remaining = remaining  # None: until EOF
        self.offset = offset  # absolute read offset for file and buffer sources
        self.start = offset or 0
        self.moved = 0  # bytes delivered to dst
        self.syscalls = 0
        self.box: list[int] = []  # a delivering syscall's result, stored from C (see above)
        self.kernel: Any = kernel
        self.bufsize = bufsize
        self.observers: tuple[Callable[[int], object], ...] = src.observers + dst.observers

    def want(self, cap: int) -> int:
        return cap if self.remaining is None else min(self.remaining, cap)

    def settle(self) -> int:
        """Account for the result waiting in ``box``; return it (0 if none).

        The counters change before the first point where a signal handler can
        run (no call, no backward jump in between), so an accounting is never
        half done; the observers hear of the bytes afterwards.
        """
        box = self.box
        if not box:  # pragma: no cover - each caller stores a result first (a stray call: no-op)
            return 0
        n = box[0]
        del box[0]
        if n:  # an EOF's 0 changes nothing and is not news
            self.moved += n
            if self.remaining is not None:
                self.remaining -= n
            if self.offset is not None:
                self.offset += n
            for on_bytes in self.observers:
                on_bytes(n)
        return n

    def advance(self, n: int) -> None:
        """Account for n bytes delivered to dst by a call that could not store its result itself."""
        self.box.append(n)
        self.settle()

    def wait_src(self) -> Wait:
        return Wait(self.src.fd, False, _timeout(self.src), f"src {self.src.label} to have data")

    def wait_dst(self) -> Wait:
        return Wait(self.dst.fd, True, _timeout(self.dst), f"dst {self.dst.label} to accept data")


def _timeout(ep: Endpoint) -> float | None:
    t = ep.timeout
    return t if t else None  # 0.0 means non-blocking: wait as long as it takes


def errname(exc: OSError) -> str:
    code = exc.errno or 0
    return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"


def write_all(t: Transfer, view: memoryview) -> Generator[Wait, None, None]:
    """Deliver all of view to dst (fd, TLS socket or object), waiting on EAGAIN."""
    dst = t.dst
    size = len(view)
    done = 0
    while done < size:
        part = view[done:] if done else view
        t.syscalls += 1
        if dst.fd >= 0:
            try:
                t.box.extend(map(t.kernel.write, (dst.fd,), (part,)))
            except BlockingIOError:
                yield t.wait_dst()
                continue
            n = t.settle()
            if n <= 0:
                raise OSError(errno.EIO, f"dst {dst.label} accepted 0 bytes")
            done += n
            continue
        else:
            # An object (TLS, a socket subclass, a file-like): _objects checks what it
            # claims and accounts for what it took.
            done += yield from write_some(t, part)
