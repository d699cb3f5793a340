"""``without_extensions``: hide server extensions from an app a legacy middleware wraps.

A middleware you cannot change that knows only ``http.response.body`` drops
``http.response.zerocopysend`` (Starlette 1.10's ``GZipMiddleware`` does;
``BaseHTTPMiddleware`` fails an assertion on it). The inner app looks in
``scope["extensions"]`` before sending those messages, so removing them there
makes it fall back to body messages the middleware understands: slower, but
correct, and only for the part of the app behind that middleware.
"""

from __future__ import annotations

from .types import ZEROCOPYSEND, ASGIApp, Receive, Scope, Send


def without_extensions(app: ASGIApp, *names: str) -> ASGIApp:
    """``app``, seeing a scope without the extensions ``names`` (default: zerocopysend).

    >>> import asyncio
    >>> seen = []
    >>> async def app(scope, receive, send):
    ...     seen.append(sorted(scope["extensions"]))
    >>> scope = {"type": "http", "extensions": {"http.response.zerocopysend": {}, "x": {}}}
    >>> asyncio.run(without_extensions(app)(scope, None, None)); seen, sorted(scope["extensions"])
    ([['x']], ['http.response.zerocopysend', 'x'])
    """
    hidden = frozenset(names or (ZEROCOPYSEND,))

    async def hiding(scope: Scope, receive: Receive, send: Send) -> None:
        extensions = scope.get("extensions")
        if extensions and not hidden.isdisjoint(extensions):
            scope = dict(scope)  # a copy: the outer middleware keeps its own view
            scope["extensions"] = {k: v for k, v in extensions.items() if k not in hidden}
        await app(scope, receive, send)

    return hiding
