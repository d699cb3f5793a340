"""The fallback: read into one reused buffer, write it out. Never allocates per chunk."""

from __future__ import annotations

import os
from collections.abc import Generator

from .._endpoint import Kind
from .._transfer import Transfer, Wait, write_all

# Measured by benchmarks/core_copy.py (docs/benchmarks.md), sender's own CPU per GiB
# (loopback softirq excluded): 32 KiB to 256 KiB are alike (164-181 ms), 1 MiB 142,
# 4 MiB 120. 1 MiB takes most of the gain and matches the splice pipe; memory stays
# bounded because a copy waiting on its source gives the buffer back (below).
BUFSIZE = 1024 * 1024

_spare: list[bytearray] = []


def _take(size: int) -> bytearray:
    if size != BUFSIZE:  # a caller's own size (copy(buffer_size=...)): not pooled
        return bytearray(size)
    try:
        return _spare.pop()
    except IndexError:
        return bytearray(BUFSIZE)


def _give(buf: bytearray) -> None:
    if len(_spare) < 8 and len(buf) == BUFSIZE:
        _spare.append(buf)


def pump(t: Transfer) -> Generator[Wait, None, None]:
    src = t.src
    if src.kind is Kind.OBJECT and not hasattr(src.obj, "readinto") and not hasattr(
        src.obj, "recv_into"
    ):
        return (yield from _pump_read(t))
    size = t.bufsize or BUFSIZE
    buf: bytearray | None = None
    whole = memoryview(b"")
    try:
        while t.remaining != 0:
            if buf is None:
                buf = _take(size)
                whole = memoryview(buf)
            want = t.want(size)
            view = whole if want == size else whole[:want]
            t.syscalls += 1
            if src.fd >= 0:
                try:
                    if t.offset is not None:
                        n = os.preadv(src.fd, [view], t.offset)
                    else:
                        n = os.readv(src.fd, [view])
                except BlockingIOError:
                    # Nothing is held while src is quiet: like the splice route's pipe,
                    # the buffer goes back to the pool, so idle copies (a relay may
                    # keep thousands) cost no memory.
                    _give(buf)
                    buf = None
                    yield t.wait_src()
                    continue
            elif hasattr(src.obj, "recv_into"):
                n = src.obj.recv_into(view)
            else:
                r = src.obj.readinto(view)  # type: ignore[attr-defined]
                if r is None:
                    raise BlockingIOError(
                        f"src {src.label} has no data yet and no fd zcopy could wait on"
                    )
                n = r
            if n == 0:
                return
            yield from write_all(t, view[:n] if n != want else view)
    finally:
        if buf is not None:
            _give(buf)


def _pump_read(t: Transfer) -> Generator[Wait, None, None]:
    """A source with only read(): its bytes objects go out as they come."""
    read = t.src.obj.read  # type: ignore[attr-defined]
    while t.remaining != 0:
        t.syscalls += 1
        data = read(t.want(t.bufsize or BUFSIZE))
        if data is None:
            raise BlockingIOError(
                f"src {t.src.label} has no data yet and no fd zcopy could wait on"
            )
        if not data:
            return
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"src {t.src.label}.read() returned {type(data).__name__}, not bytes")
        if t.remaining is not None and len(data) > t.remaining:
            raise ValueError(
                f"src {t.src.label}.read({t.remaining}) returned {len(data)} bytes: more than asked"
            )
        yield from write_all(t, memoryview(data))
