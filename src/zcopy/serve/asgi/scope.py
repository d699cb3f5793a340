"""The ASGI ``http`` scope of one request, sans-IO: a parsed head in, a dict out.

``path`` is percent-decoded UTF-8 (bytes that are not UTF-8 become U+FFFD, as
under uvicorn) and, as the ASGI spec and uvicorn have it, includes
``root_path``; ``raw_path`` is the target's path as sent (for an absolute-form
target, only its path).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import httptools

from .reader import AsgiRequest

ASGI = {"version": "3.0", "spec_version": "2.4"}

# What this server implements beyond the base spec; apps look here before sending them.
EXTENSIONS: dict[str, dict[str, object]] = {
    "http.response.pathsend": {},
    "http.response.zerocopysend": {},
}

Address = tuple[str, int]


class BadTarget(ValueError):
    """A request-target that is not a path (400)."""


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """``(raw_path, query_string)`` of an origin-form or absolute-form target.

    >>> split_target(b"/a%20b?x=1")
    (b'/a%20b', b'x=1')
    >>> split_target(b"http://example.com:8/p?q")
    (b'/p', b'q')
    >>> split_target(b"*")
    (b'*', b'')
    """
    if target.startswith(b"/") or target == b"*":
        path, _, query = target.partition(b"?")
        return path, query
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        raise BadTarget(target[:80].decode("latin-1")) from None
    return url.path or b"/", url.query or b""


def address(name: object) -> Address | None:
    """A socket address as ASGI wants it: ``(host, port)``, or None for a Unix socket.

    >>> address(("::1", 80, 0, 0)), address(("127.0.0.1", 8)), address("/run/s")
    (('::1', 80), ('127.0.0.1', 8), None)
    """
    if isinstance(name, tuple) and len(name) >= 2:
        return (str(name[0]), int(name[1]))
    return None


def http_scope(
    req: AsgiRequest,
    *,
    client: Address | None,
    server: Address | None,
    root_path: str = "",
    scheme: str = "http",
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``http`` scope for ``req`` (``BadTarget`` for a target that is no path).

    >>> from zcopy.serve.asgi.reader import AsgiRequestReader
    >>> r = AsgiRequestReader(); r.feed(b"GET /a%2Fb?x=1 HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n")
    >>> s = http_scope(r.ready[0], client=("1.2.3.4", 5), server=None, root_path="/app")
    >>> s["path"], s["raw_path"], s["query_string"], s["root_path"], s["headers"]
    ('/app/a/b', b'/app/a%2Fb', b'x=1', '/app', [(b'host', b'h')])
    """
    target = req.target
    if target[:1] == b"/" and b"?" not in target:
        raw_path, query = target, b""  # the usual origin-form target without a query
    else:
        raw_path, query = split_target(target)
    try:
        path = raw_path.decode("ascii")
    except UnicodeDecodeError:
        raise BadTarget(raw_path[:80].decode("latin-1")) from None  # httptools lets none by
    if "%" in path:
        # Bytes that are not UTF-8 become U+FFFD, as under uvicorn: a lone surrogate would
        # make an ordinary app (one that encodes the path, as Starlette's responses do)
        # fail with a 500 on a hostile URL. ``raw_path`` keeps the bytes as sent.
        path = unquote(path)
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": ASGI,
        "http_version": req.version,
        "method": req.method,
        "scheme": scheme,
        "path": root_path + path,
        "raw_path": root_path.encode("ascii") + raw_path if root_path else raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": req.raw_headers,
        "client": client,
        "server": server,
        "extensions": dict(EXTENSIONS),  # an app or middleware may add its own
    }
    if state is not None:
        scope["state"] = state.copy()  # shallow, per the lifespan spec
    return scope
