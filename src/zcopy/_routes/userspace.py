"""The fallback: read into one reused buffer, write it out. Never allocates per chunk."""

from __future__ import annotations

import mmap
import os
from collections.abc import Generator

from .._endpoint import Kind
from .._objects import read_some, trusted_reader
from .._transfer import Transfer, Wait, write_all

# Measured by benchmarks/core_copy.py (docs/benchmarks.md), sender's own CPU per GiB
# (loopback softirq excluded): 32 KiB to 256 KiB are alike (164-181 ms), 1 MiB 142,
# 4 MiB 120. 1 MiB takes most of the gain and matches the splice pipe; memory stays
# bounded because a copy waiting on its source gives the buffer back (below).
BUFSIZE = 1024 * 1024

# Pooled buffers are anonymous mappings, not bytearrays. A 1 MiB bytearray comes from
# malloc, and once glibc has freed one such mmap'd block it raises its mmap threshold and
# serves the next ones from the heap, which it keeps after they are freed: RSS stayed at
# 230-400 MiB after rounds of 200 relays blocked on non-reading clients had all closed.
# An mmap's pages go back to the kernel (munmap) as soon as the buffer is dropped.
Buffer = bytearray | mmap.mmap

_spare: list[Buffer] = []


def _take(size: int) -> Buffer:
    if size != BUFSIZE:  # a caller's own size (copy(buffer_size=...)): not pooled
        return bytearray(size)
    try:
        return _spare.pop()
    except IndexError:
        return mmap.mmap(-1, BUFSIZE)


def _give(buf: Buffer) -> None:
    if len(_spare) < 8 and len(buf) == BUFSIZE:
        _spare.append(buf)
    elif isinstance(buf, mmap.mmap):
        # Not kept: its pages go back now. A relay that ended in an error can keep its
        # generator's frame (and so this buffer) alive in a reference cycle until the
        # next full garbage collection; the mapping may live on, its memory does not.
        buf.madvise(mmap.MADV_DONTNEED)


def pump(t: Transfer) -> Generator[Wait, None, None]:
    src = t.src
    if src.kind is Kind.OBJECT and not hasattr(src.obj, "readinto") and not hasattr(
        src.obj, "recv_into"
    ):
        return (yield from _pump_read(t))
    size = t.bufsize or BUFSIZE
    # An object that is not known to fill what it counts (a readinto() that says 5 and
    # wrote nothing) reads into a buffer of this copy's own: a pooled one would hand it
    # another copy's bytes to send. Such a buffer is never pooled.
    pooled = src.kind is not Kind.OBJECT or trusted_reader(src)
    buf: Buffer | None = None
    whole = memoryview(b"")
    try:
        while t.remaining != 0:
            if buf is None:
                buf = _take(size) if pooled else bytearray(size)
                whole = memoryview(buf)
            want = t.want(size)
            view = whole if want == size else whole[:want]
            t.syscalls += 1
            wait: Wait | None = None
            if src.fd >= 0:
                try:
                    if t.offset is not None:
                        n = os.preadv(src.fd, [view], t.offset)
                    else:
                        n = os.readv(src.fd, [view])
                except BlockingIOError:
                    wait = t.wait_src()
            else:
                got = read_some(src, view)  # checked: 0 <= n <= len(view), or a Wait
                if isinstance(got, int):
                    n = got
                else:
                    wait = got
            if wait is not None:
                if pooled:
                    # Nothing is held while src is quiet: like the splice route's pipe,
                    # the buffer goes back to the pool, so idle copies (a relay may
                    # keep thousands) cost no memory.
                    _give(buf)
                    buf = None
                yield wait
                continue
            if n == 0:
                return
            yield from write_all(t, view[:n] if n != want else view)
    finally:
        if buf is not None and pooled:
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
