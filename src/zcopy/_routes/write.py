"""write(2) straight from a buffer already in memory (bytes, bytearray, mmap, BytesIO)."""

from __future__ import annotations

from collections.abc import Generator

from .._transfer import Transfer, Wait, write_all


def pump(t: Transfer) -> Generator[Wait, None, None]:
    view = t.src.buffer
    assert view is not None
    start = t.offset or 0
    end = len(view) if t.remaining is None else min(len(view), start + t.remaining)
    if end > start:
        # One big write of the whole slice: the kernel takes what it can, we loop on the rest.
        yield from write_all(t, view[start:end])
