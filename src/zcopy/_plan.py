"""The one place that chooses a route. Pure: it looks at resolved endpoints only."""

from __future__ import annotations

import enum
import os
import sys
from dataclasses import dataclass

from ._endpoint import Endpoint, Kind


class Route(enum.Enum):
    """How the bytes move. Every route but ``USERSPACE`` keeps them out of Python.

    >>> [r.value for r in Route if r.zero_copy]
    ['sendfile', 'splice', 'copy_file_range', 'write']
    """

    SENDFILE = "sendfile"
    SPLICE = "splice"
    COPY_FILE_RANGE = "copy_file_range"
    WRITE = "write"  # straight from a buffer already in memory: no read, no extra copy
    USERSPACE = "userspace"

    @property
    def zero_copy(self) -> bool:
        """True for the routes that never bounce bytes through a user-space buffer.

        The one definition: ``explain().zero_copy``, strict mode and
        ``Stats.zero_copy_bytes`` all read it. ``WRITE`` counts: its bytes are
        already in memory and reach the kernel with one write, no extra copy.
        """
        return self is not Route.USERSPACE

    @property
    def label(self) -> str:
        """The route in words, as ``explain()`` prints it."""
        return "user space" if self is Route.USERSPACE else self.value


class Fallback(enum.StrEnum):
    """Why a copy left the route it would have taken: the codes ``stats().fallbacks`` counts.

    A plan made by ``choose()`` carries one when the pair has no kernel route;
    a route that the kernel refuses on its first call raises ``NotHandled``
    with one, and the job moves on to the plan's next route.

    >>> Fallback.SRC_OPAQUE == "src-opaque"
    True
    """

    PLATFORM = "platform"  # not Linux
    SRC_OPAQUE = "src-opaque"  # src has no fd zcopy may trust (a wrapper, TLS, ...)
    DST_OPAQUE = "dst-opaque"
    DST_APPEND = "dst-append"  # O_APPEND: sendfile, splice and copy_file_range refuse it
    NO_SPLICE = "no-splice"  # the caller turned splice off (relay(splice=False))
    COPY_FILE_RANGE_REFUSED = "copy_file_range-refused"
    COPY_FILE_RANGE_ZERO = "copy_file_range-zero"  # a silent 0 on the first call
    SENDFILE_REFUSED = "sendfile-refused"
    SENDFILE_ZERO_SIZE = "sendfile-zero-size"  # size 0 and nothing sent: /proc, /sys
    SPLICE_REFUSED = "splice-refused"


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``explain()`` returns: the route a copy will take, and why.

    ``routes`` lists the route and the ones zcopy falls back to if the kernel
    refuses at the first call (nothing is consumed before a fallback).
    ``fallback_code`` is set when the plan is already a fallback.

    >>> import io, zcopy
    >>> str(zcopy.explain(io.BytesIO(), b"abc"))
    'write: src is a bytes buffer (3 bytes), written straight from memory to dst a BytesIO'
    """

    route: Route
    reason: str
    routes: tuple[Route, ...]
    src: str
    dst: str
    fallback_code: Fallback | None = None

    @property
    def zero_copy(self) -> bool:
        """Whether the planned route keeps the bytes out of user space."""
        return self.route.zero_copy

    def __str__(self) -> str:
        return f"{self.route.label}: {self.reason}"


_LINUX = sys.platform.startswith("linux") and hasattr(os, "splice")


def _userspace(src: Endpoint, dst: Endpoint, code: Fallback, why: str) -> Plan:
    return Plan(Route.USERSPACE, why, (Route.USERSPACE,), src.label, dst.label, code)


def choose(src: Endpoint, dst: Endpoint) -> Plan:
    """Pick the cheapest route for this pair, with the human reason."""
    if src.kind is Kind.BUFFER:
        return Plan(
            Route.WRITE,
            f"src is {src.label}, written straight from memory to dst {dst.label}",
            (Route.WRITE,),
            src.label,
            dst.label,
        )
    if not _LINUX:  # pragma: no cover - other platforms; CI runs on Linux
        why = f"zero-copy routes are Linux-only (this is {sys.platform})"
        return _userspace(src, dst, Fallback.PLATFORM, why)
    if src.opaque:
        return _userspace(src, dst, Fallback.SRC_OPAQUE, src.opaque)
    if dst.opaque:
        return _userspace(src, dst, Fallback.DST_OPAQUE, dst.opaque)
    if dst.append:
        return _userspace(
            src, dst, Fallback.DST_APPEND,
            f"dst {dst.label} is opened O_APPEND, "
            "which sendfile, splice and copy_file_range refuse",
        )
    pair = f"src is {src.label}, dst is {dst.label}"
    if src.kind is Kind.FILE:
        routes: tuple[Route, ...]
        if dst.kind is Kind.FILE:
            routes = (Route.COPY_FILE_RANGE, Route.SENDFILE, Route.USERSPACE)
        else:
            routes = (Route.SENDFILE, Route.USERSPACE)
        return Plan(routes[0], pair, routes, src.label, dst.label)
    if src.kind is Kind.PIPE or dst.kind is Kind.PIPE:
        how = "straight between them"
    else:
        how = "through a pipe"
    routes = (Route.SPLICE, Route.USERSPACE)
    return Plan(Route.SPLICE, f"{pair} ({how})", routes, src.label, dst.label)
