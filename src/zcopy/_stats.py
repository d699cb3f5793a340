"""Process-wide route statistics: one locked update per copy, never per chunk."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RouteStats:
    """Totals for one route: copies that ran on it, bytes, data-path syscalls."""

    calls: int = 0
    bytes: int = 0
    syscalls: int = 0


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of ``zcopy.stats()``.

    ``routes`` maps a route name (``"sendfile"``, ``"splice"``,
    ``"copy_file_range"``, ``"write"``, ``"userspace"``) to its totals;
    ``fallbacks`` maps a fallback reason code to how often it happened, and
    ``fallback_examples`` keeps the latest human reason for each code.

    >>> import io, zcopy
    >>> zcopy.reset_stats()
    >>> _ = zcopy.copy(io.BytesIO(), b"abc")
    >>> zcopy.stats().routes["write"].bytes
    3
    """

    routes: dict[str, RouteStats] = field(default_factory=dict)
    fallbacks: dict[str, int] = field(default_factory=dict)
    fallback_examples: dict[str, str] = field(default_factory=dict)

    @property
    def zero_copy_bytes(self) -> int:
        """Bytes moved by sendfile, splice and copy_file_range."""
        return sum(
            r.bytes for name, r in self.routes.items() if name not in ("userspace", "write")
        )

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return {
            "routes": {
                k: {"calls": v.calls, "bytes": v.bytes, "syscalls": v.syscalls}
                for k, v in self.routes.items()
            },
            "fallbacks": dict(self.fallbacks),
            "fallback_examples": dict(self.fallback_examples),
        }


_lock = threading.Lock()
_routes: dict[str, list[int]] = {}
_fallbacks: dict[str, int] = {}
_examples: dict[str, str] = {}


def record(route: str, nbytes: int, syscalls: int) -> None:
    with _lock:
        entry = _routes.get(route)
        if entry is None:
            _routes[route] = [1, nbytes, syscalls]
        else:
            entry[0] += 1
            entry[1] += nbytes
            entry[2] += syscalls


def record_fallback(code: str, reason: str) -> None:
    with _lock:
        _fallbacks[code] = _fallbacks.get(code, 0) + 1
        _examples[code] = reason


def stats() -> Stats:
    """Return a snapshot of the process-wide route counters.

    >>> import zcopy
    >>> isinstance(zcopy.stats().routes, dict)
    True
    """
    with _lock:
        return Stats(
            routes={k: RouteStats(*v) for k, v in _routes.items()},
            fallbacks=dict(_fallbacks),
            fallback_examples=dict(_examples),
        )


def reset_stats() -> None:
    """Zero every counter.

    >>> import zcopy
    >>> zcopy.reset_stats(); zcopy.stats().routes
    {}
    """
    with _lock:
        _routes.clear()
        _fallbacks.clear()
        _examples.clear()
