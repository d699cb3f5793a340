"""The wrapper protocol: how any object hands zcopy the file or socket behind it.

A wrapper (middleware, a ranged view, a byte counter) that defines
``__zcopy__(self) -> zcopy.Handoff`` keeps the kernel fast path: zcopy asks it
for the object underneath instead of calling its ``read()``/``write()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Handoff:
    """What a wrapper hands to zcopy in ``__zcopy__``.

    ``target``: the object underneath (a file object, socket, raw fd, buffer,
    or another wrapper; zcopy unwraps recursively).
    ``offset``: for a seekable source, where the bytes start, counted from the
    target's own start (for a nested wrapper, from that wrapper's start). An
    explicit offset leaves the target's file position untouched. ``None``: the
    target's current position, which advances by the bytes copied. A sink is
    written at its own position: an offset there raises ``ValueError``.
    ``length``: at most this many bytes (``None``: no limit).
    ``on_bytes``: called with the size of every chunk moved through this wrapper.

    >>> import io, zcopy
    >>> class Counting:
    ...     def __init__(self, f):
    ...         self.f, self.n = f, 0
    ...     def read(self, size=-1):  # the slow way others use
    ...         data = self.f.read(size); self.n += len(data); return data
    ...     def __zcopy__(self):  # the fast way zcopy uses
    ...         return zcopy.Handoff(self.f, on_bytes=self._count)
    ...     def _count(self, n):
    ...         self.n += n
    >>> src = Counting(io.BytesIO(b"hello"))
    >>> zcopy.copy(io.BytesIO(), src), src.n
    (5, 5)
    """

    target: object
    offset: int | None = None
    length: int | None = None
    on_bytes: Callable[[int], object] | None = None

    def __post_init__(self) -> None:
        for name in ("offset", "length"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                kind = type(value).__name__
                raise TypeError(f"Handoff.{name} must be an int or None, not {kind}")
            if value < 0:
                raise ValueError(f"Handoff.{name} must be >= 0, got {value}")
        # Checked here, when the wrapper hands off, so a bad observer fails before a byte moves.
        if self.on_bytes is not None and not callable(self.on_bytes):
            kind = type(self.on_bytes).__name__
            raise TypeError(f"Handoff.on_bytes must be callable (on_bytes(n)) or None, not {kind}")
