"""The state one copy carries through its route, and the shared route contract.

Every route is a generator ``pump(t: Transfer) -> Generator[Wait, None, None]``: it moves
bytes with non-blocking-safe syscalls, yields a ``Wait`` when the kernel says
EAGAIN, and either finishes (``t.moved`` is the truth) or raises
``NotHandled`` having consumed nothing it did not deliver. The same generator
is driven by ``copy()`` (poll) and ``acopy()`` (the asyncio loop).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Generator
from typing import NamedTuple

from ._endpoint import Endpoint


class Wait(NamedTuple):
    fd: int
    write: bool  # wait until writable (else readable)
    timeout: float | None  # None: no limit (blocking or non-blocking endpoint)
    what: str


# errno values with which the kernel refuses a route for this pair of fds.
REFUSED = frozenset(
    {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EBADF, errno.ESPIPE}
)

# The largest single sendfile/copy_file_range request (Linux caps at 2 GiB - 4 KiB).
BIG = 1 << 30


class Transfer:
    __slots__ = ("dst", "moved", "observers", "offset", "remaining", "src", "start", "syscalls")

    def __init__(self, src: Endpoint, dst: Endpoint, remaining: int | None, offset: int | None):
        self.src = src
        self.dst = dst
        self.remaining = remaining  # None: until EOF
        self.offset = offset  # absolute read offset for file and buffer sources
        self.start = offset or 0
        self.moved = 0  # bytes delivered to dst
        self.syscalls = 0
        self.observers: tuple[Callable[[int], object], ...] = src.observers + dst.observers

    def want(self, cap: int) -> int:
        return cap if self.remaining is None else min(self.remaining, cap)

    def advance(self, n: int) -> None:
        """Account for n bytes delivered to dst, and tell the observers."""
        self.moved += n
        if self.remaining is not None:
            self.remaining -= n
        if self.offset is not None:
            self.offset += n
        for on_bytes in self.observers:
            on_bytes(n)

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
                n = os.write(dst.fd, part)
            except BlockingIOError:
                yield t.wait_dst()
                continue
        else:
            obj = dst.obj
            if hasattr(obj, "sendall"):
                obj.sendall(part)  # a TLS socket keeps its own framing and timeout
                n = len(part)
            else:
                r = obj.write(part)  # type: ignore[attr-defined]
                n = len(part) if r is None else int(r)
        if n <= 0:
            raise OSError(errno.EIO, f"dst {dst.label} accepted 0 bytes")
        done += n
        t.advance(n)
