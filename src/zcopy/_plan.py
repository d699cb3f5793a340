"""The one place that chooses a route. Pure: it looks at resolved endpoints only."""

from __future__ import annotations

import enum
import os
import sys
from dataclasses import dataclass

from ._endpoint import Endpoint, Kind


class Route(enum.Enum):
    """How the bytes move. Every route but ``USERSPACE`` keeps them out of Python."""

    SENDFILE = "sendfile"
    SPLICE = "splice"
    COPY_FILE_RANGE = "copy_file_range"
    WRITE = "write"  # straight from a buffer already in memory: no read, no extra copy
    USERSPACE = "userspace"

    @property
    def zero_copy(self) -> bool:
        """True for the routes that never bounce bytes through a user-space buffer."""
        return self is not Route.USERSPACE

    @property
    def label(self) -> str:
        """The route in words, as ``explain()`` prints it."""
        return "user space" if self is Route.USERSPACE else self.value


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
    fallback_code: str | None = None

    @property
    def zero_copy(self) -> bool:
        """Whether the planned route keeps the bytes out of user space."""
        return self.route.zero_copy

    def __str__(self) -> str:
        return f"{self.route.label}: {self.reason}"


_LINUX = sys.platform.startswith("linux") and hasattr(os, "splice")


def _userspace(src: Endpoint, dst: Endpoint, code: str, why: str) -> Plan:
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
    if not _LINUX:
        why = f"zero-copy routes are Linux-only (this is {sys.platform})"
        return _userspace(src, dst, "platform", why)
    if src.opaque:
        return _userspace(src, dst, "src-opaque", src.opaque)
    if dst.opaque:
        return _userspace(src, dst, "dst-opaque", dst.opaque)
    if dst.append:
        return _userspace(
            src, dst, "dst-append",
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
