"""Errors and warnings zcopy raises, each carrying the human reason behind it."""

from __future__ import annotations


class FastPathLost(RuntimeError):
    """Raised in strict mode when a copy would leave the kernel's fast path.

    Nothing has been moved when it is raised. ``reason`` says why the fast
    path is not available, in the words ``explain()`` uses.

    >>> import io, zcopy
    >>> try:
    ...     zcopy.copy(io.BytesIO(), io.StringIO("x"), require_zero_copy=True)
    ... except TypeError:
    ...     pass  # text is refused before strict mode is even asked
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"zero-copy required but unavailable: {reason}")
        self.reason = reason


class FastPathWarning(RuntimeWarning):
    """Warned when a copy falls back to user space (off unless you opt in).

    Opt in with ``warnings.simplefilter("default", zcopy.FastPathWarning)``
    or ``python -W default::zcopy.FastPathWarning``.

    >>> import warnings, zcopy
    >>> warnings.simplefilter("default", zcopy.FastPathWarning)
    """


class NotHandled(Exception):
    """A route declined: nothing was consumed from the source (or what was, was delivered).

    ``moved`` is the number of bytes the route delivered before it had to give
    up (only ever non-zero when the route salvaged bytes it had already taken).
    """

    def __init__(self, code: str, reason: str, moved: int = 0) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.moved = moved


def with_count(exc: BaseException, copied: int) -> BaseException:
    """Attach the number of bytes already delivered to an exception raised mid-copy."""
    try:
        exc.bytes_copied = copied  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - exotic exception types with __slots__
        pass
    return exc
