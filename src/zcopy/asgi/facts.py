"""The request facts the response planner reads, taken from an ASGI ``http`` scope."""

from __future__ import annotations

from ..serve.plan import FIELDS
from .types import Scope

# The request fields ``serve.plan.plan_file`` looks at; the rest are not copied.
WANTED = frozenset(name.encode("ascii") for name in FIELDS)


def request_fields(scope: Scope) -> dict[str, str]:
    """The planner's fields from ``scope["headers"]``, lower-case names, repeats comma-joined.

    >>> request_fields({"headers": [(b"Range", b"bytes=0-1"), (b"host", b"h"),
    ...     (b"if-none-match", b'"a"'), (b"if-none-match", b'"b"')]})
    {'range': 'bytes=0-1', 'if-none-match': '"a", "b"'}
    """
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = bytes(raw_name).lower()
        if name in WANTED:
            key, value = name.decode("ascii"), bytes(raw_value).decode("latin-1")
            out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def method(scope: Scope) -> str:
    """The request method, upper-case (``GET`` when a scope leaves it out).

    >>> method({"method": "head"})
    'HEAD'
    """
    return str(scope.get("method", "GET")).upper()
