"""Process-wide route statistics: one update per copy, never per chunk.

A copy the full path ran takes the lock once; a copy one kernel call finished
(the direct path) takes none: it appends itself (its one-item result list) to
``one_call``, which is folded into the totals when they are read, or when it
grows long.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import Any, Protocol

from ._plan import Fallback, Route


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
        """Bytes moved by the routes ``Route.zero_copy`` names (all but user space).

        >>> Stats(routes={"write": RouteStats(1, 3, 1)}).zero_copy_bytes
        3
        """
        return sum(r.bytes for name, r in self.routes.items() if Route(name).zero_copy)

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

# Copies that one syscall finished (the direct path), per route: the copies themselves,
# each a one-item list holding its byte count (a ``_direct.Shot``). list.append is one C
# call, atomic under the GIL, so such a copy records without a lock (a lock cost 0.5 us,
# a tenth of such a copy) and without a second step: whether a copy was logged is read
# from the log itself (``record_unless_logged``). The recorder folds the list once it
# holds FOLD_AT entries, which bounds it, and stats() folds what is left.
one_call: dict[str, list[list[int]]] = {"sendfile": [], "write": []}
FOLD_AT = 256
_count_of = itemgetter(0)
_append: Callable[[list[Any], None], None] = list.append


class _Recordable(Protocol):
    recorded: bool


def record_once(copy: _Recordable, route: str, nbytes: int, syscalls: int) -> None:
    """Count a copy unless it was counted: a raise cut short the first try, or none did.

    Between the last call and the flag nothing can be interrupted (no call, no
    backward jump), so a copy is counted exactly once whenever a handler raises.
    """
    with _lock:
        if copy.recorded:
            return
        entry = _routes.setdefault(route, [0, 0, 0])
        entry[0] += 1  # no call from here to the flag: a raising handler cannot run between
        entry[1] += nbytes
        entry[2] += syscalls
        copy.recorded = True


def record_unless_logged(route: str, copy: list[Any]) -> None:
    """Count a one-call copy that a raise cut off around its logging: exactly once.

    A copy still in the log, or marked by the fold or reset that took it off, is
    counted there (or was reset away); only one never logged is recorded here.
    """
    with _lock:
        if len(copy) == 1 and not any(entry is copy for entry in one_call[route]):
            entry = _routes.setdefault(route, [0, 0, 0])
            # No call from here to the mark (which makes a second try a no-op): a raising
            # handler cannot run in between.
            entry[0] += 1
            entry[1] += copy[0]
            entry[2] += 1
            copy.append(None)  # list.append is one C call; its result needs no storing


def fold() -> None:
    """Add the copies logged in ``one_call`` to the totals."""
    with _lock:
        _fold()


def _fold() -> None:
    # The caller holds _lock. An append racing with this lands after index k, untouched.
    for route, log in one_call.items():
        k = len(log)
        if k:
            done = log[:k]
            _mark(done)  # before they leave the log: from here on, logged either way
            nbytes = sum(map(_count_of, done))
            entry = _routes.setdefault(route, [0, 0, 0])
            # No call from here on: a raising signal handler cannot run between taking
            # the entries off the log and counting them.
            del log[:k]
            entry[0] += k
            entry[1] += nbytes
            entry[2] += k


def _mark(copies: list[list[int]]) -> None:
    """Give each copy a second item: ``record_unless_logged`` then knows it was logged.

    One C loop (a deque of length 0 drains the map), so no handler runs inside it.
    """
    deque(map(_append, copies, repeat(None)), maxlen=0)


def record_fallback(code: Fallback, reason: str) -> None:
    key = code.value  # plain str keys: stats() and its JSON read as they always did
    with _lock:
        _fallbacks[key] = _fallbacks.get(key, 0) + 1
        _examples[key] = reason


def stats() -> Stats:
    """Return a snapshot of the process-wide route counters.

    >>> import zcopy
    >>> isinstance(zcopy.stats().routes, dict)
    True
    """
    with _lock:
        _fold()
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
        for log in one_call.values():
            _mark(log)  # reset away: a raise in the copy's last steps must not count it
            del log[:]
        _routes.clear()
        _fallbacks.clear()
        _examples.clear()


@dataclass(frozen=True, slots=True)
class CopyEvent:
    """One finished copy, as a listener hears it (the pytest plugin is one).

    ``reason`` says why this route ran: the fallback's reason when the copy
    fell back, the plan's otherwise. ``site`` is ``file:line in function`` of
    the first caller outside zcopy's core.
    """

    route: str
    nbytes: int
    reason: str
    site: str


# Called once per finished copy. Empty unless a tool installs one, and then the
# only cost a copy pays is this list's truth test.
listeners: list[Callable[[CopyEvent], None]] = []


def call_site() -> str:
    """Where the copy was asked for: the first frame outside zcopy's core.

    >>> app = {"call_site": call_site, "__name__": "app"}
    >>> exec("site = call_site()", app); app["site"]
    '<string>:1 in <module>'
    """
    frame = sys._getframe(1)
    while frame.f_back is not None and _in_core(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def _in_core(module: str) -> bool:
    return module == "zcopy" or module.startswith("zcopy._")


def notify(route: str, nbytes: int, reason: str, site: str) -> None:
    event = CopyEvent(route, nbytes, reason, site)
    for listener in tuple(listeners):
        listener(event)
