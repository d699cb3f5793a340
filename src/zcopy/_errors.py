"""Errors and warnings zcopy raises, each carrying the human reason behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._plan import Fallback


class FastPathLost(RuntimeError):
    """Raised in strict mode when a copy would leave the kernel's fast path.

    ``reason`` says why the fast path is not available, in the words
    ``explain()`` uses. It is raised before a byte moves whenever the plan
    already says so; when the kernel refuses at run time after a buffered
    reader's read-ahead went out first, ``bytes_copied`` says how many did.

    >>> import io, zcopy
    >>> class JustReader:
    ...     def read(self, n=-1): return b""
    >>> try:
    ...     zcopy.copy(io.BytesIO(), JustReader(), require_zero_copy=True)
    ... except zcopy.FastPathLost as exc:
    ...     print(exc.bytes_copied, exc.reason.startswith("user space: src JustReader"))
    0 True
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"zero-copy required but unavailable: {reason}")
        self.reason = reason
        self.bytes_copied = 0


class FastPathWarning(RuntimeWarning):
    """Warned when a copy falls back to user space (off unless you opt in).

    Opt in with ``warnings.simplefilter("default", zcopy.FastPathWarning)``
    or ``python -W default::zcopy.FastPathWarning``.

    >>> import warnings, zcopy
    >>> warnings.simplefilter("default", zcopy.FastPathWarning)
    """


class NotHandled(Exception):
    """A route declined on its first call: nothing it took from the source is lost.

    ``code`` says why; the job tries the plan's next route. Bytes a route had
    already taken (splice's pipe) were delivered before it raised.
    """

    def __init__(self, code: Fallback, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def with_count(exc: BaseException, copied: int) -> BaseException:
    """Attach the number of bytes already delivered to an exception raised mid-copy."""
    try:
        exc.bytes_copied = copied  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - exotic exception types with __slots__
        pass
    return exc
