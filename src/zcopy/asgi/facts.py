"""The request facts the response planner reads, taken from an ASGI ``http`` scope."""

from __future__ import annotations

from ..serve.plan import FIELDS
from .types import Scope

# The request fields ``serve.plan.plan_file`` looks at, by their lower-case ``bytes`` name
# (as ASGI servers give them): one dict lookup per field names the planner's key.
WANTED = {name.encode("ascii"): name for name in FIELDS}
_VERBS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def request_fields(scope: Scope) -> dict[str, str]:
    """The planner's fields from ``scope["headers"]``, lower-case names, repeats comma-joined.

    Names a server sent in capitals (the spec says lower-case; not every server
    obliges) and ``bytearray`` pairs are found too.

    >>> request_fields({"headers": [(b"Range", b"bytes=0-1"), (b"host", b"h"),
    ...     (b"if-none-match", b'"a"'), (bytearray(b"if-none-match"), b'"b"')]})
    {'range': 'bytes=0-1', 'if-none-match': '"a", "b"'}
    """
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        if type(raw_name) is bytes and raw_name.islower():
            key = WANTED.get(raw_name)
        else:  # capitals, a bytearray, a memoryview: the slow way
            key = WANTED.get(bytes(raw_name).lower())
        if key is None:
            continue
        value = bytes(raw_value).decode("latin-1")
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def method(scope: Scope) -> str:
    """The request method, upper-case (``GET`` when a scope leaves it out).

    >>> method({"method": "head"}), method({})
    ('HEAD', 'GET')
    """
    verb = scope.get("method", "GET")
    return verb if type(verb) is str and verb in _VERBS else str(verb).upper()
