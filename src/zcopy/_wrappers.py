"""section() and observe(): wrappers that keep the fast path through the zcopy protocol."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

from ._protocol import Handoff


class Section:
    """A byte range of a seekable file: what ``io.LimitedReader`` is to Go, with an offset.

    Copying a section reads ``length`` bytes from ``offset`` and leaves the
    file's own position alone. It also reads like a file (``read``/``readinto``),
    by ``pread`` on the fd, for code that is not zcopy.
    """

    __slots__ = ("_pos", "length", "offset", "target")

    def __init__(self, target: object, offset: int, length: int | None) -> None:
        # Plain ints pass at once (a server builds one section per response); anything
        # else gets the full check and its one-line error.
        if type(offset) is not int or offset < 0 or (
            length is not None and (type(length) is not int or length < 0)
        ):
            _check_range(offset, length)
        self.target = target
        self.offset = offset
        self.length = length
        self._pos = 0

    def __zcopy__(self) -> Handoff:
        return Handoff(self.target, offset=self.offset, length=self.length)

    def __repr__(self) -> str:
        return f"Section({self.target!r}, offset={self.offset}, length={self.length})"

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Read from the section: a file by pread (its position is neither used nor moved),
        a buffer by slicing."""
        left = None if self.length is None else self.length - self._pos
        if size is None or size < 0:
            size = left if left is not None else 1 << 62
        elif left is not None:
            size = min(size, left)
        if size <= 0:
            return b""
        start = self.offset + self._pos
        if isinstance(self.target, io.BytesIO):
            with self.target.getbuffer() as view:
                data = bytes(view[start : start + size])
            self._pos += len(data)
            return data
        if not isinstance(self.target, int) and not hasattr(self.target, "fileno"):
            with memoryview(self.target).cast("B") as view:  # type: ignore[arg-type]
                data = bytes(view[start : start + size])
            self._pos += len(data)
            return data
        fd = self.target if isinstance(self.target, int) else self.target.fileno()
        chunks = []
        while size > 0:
            data = os.pread(fd, min(size, 1 << 20), self.offset + self._pos)
            if not data:
                break
            chunks.append(data)
            self._pos += len(data)
            size -= len(data)
        return b"".join(chunks)

    def readinto(self, buf: Any) -> int:
        """Read into a writable buffer, like ``read(len(buf))``."""
        with memoryview(buf).cast("B") as view:
            data = self.read(len(view))
            view[: len(data)] = data
        return len(data)


def _check_range(offset: object, length: object) -> None:
    for name, value in (("offset", offset), ("length", length)):
        if value is None and name == "length":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"section {name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise ValueError(f"section {name} must be >= 0, got {value}")


def section(file: object, offset: int, length: int | None) -> Section:
    """A ranged view of a seekable file (or buffer) that keeps sendfile/copy_file_range.

    ``length=None`` runs to EOF. The file's position is neither used nor moved.

    >>> import io, zcopy
    >>> out = io.BytesIO()
    >>> zcopy.copy(out, zcopy.section(b"0123456789", 2, 3)), out.getvalue()
    (3, b'234')
    """
    return Section(file, offset, length)


class Observed:
    """A source or sink whose every moved chunk is reported to ``on_bytes(n)``.

    zcopy reaches the object underneath through ``__zcopy__`` and calls the
    observer after each kernel call, so counting bytes no longer costs the
    fast path. Plain ``read``/``readinto``/``write`` calls are observed too.
    """

    __slots__ = ("on_bytes", "target")

    def __init__(self, target: object, on_bytes: Callable[[int], object]) -> None:
        if not callable(on_bytes):
            raise TypeError("observe() needs a callable on_bytes(n)")
        self.target = target
        self.on_bytes = on_bytes

    def __zcopy__(self) -> Handoff:
        return Handoff(self.target, on_bytes=self.on_bytes)

    def __repr__(self) -> str:
        return f"Observed({self.target!r})"

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.target.read(size)  # type: ignore[attr-defined]
        if data:
            self.on_bytes(len(data))
        return data

    def readinto(self, buf: Any) -> int | None:
        n: int | None = self.target.readinto(buf)  # type: ignore[attr-defined]
        if n:
            self.on_bytes(n)
        return n

    def write(self, data: Any) -> int:
        n = self.target.write(data)  # type: ignore[attr-defined]
        written = len(memoryview(data)) if n is None else int(n)
        if written:
            self.on_bytes(written)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def observe(obj: object, on_bytes: Callable[[int], object]) -> Observed:
    """Wrap a source or sink so ``on_bytes(n)`` hears of every chunk, fast path kept.

    >>> import io, zcopy
    >>> seen = []
    >>> zcopy.copy(io.BytesIO(), zcopy.observe(io.BytesIO(b"abcdef"), seen.append))
    6
    >>> sum(seen)
    6
    """
    return Observed(obj, on_bytes)
