"""``count_bytes``: a middleware that sees every response byte and keeps the fast path.

It is the ASGI form of ``zcopy.observe``: it wraps ``send``, counts what each
message carries or asks the server to send, and passes *every* message on
unchanged, including ``http.response.pathsend`` and
``http.response.zerocopysend`` (counted from the message: ``count``, or the
file's size past ``offset``; for pathsend the file's size). A wrapper that
rebuilt messages, or knew only ``http.response.body``, would drop those, and
with them the server's sendfile (docs/asgi.md shows the trap).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .types import PATHSEND, ZEROCOPYSEND, ASGIApp, Message, Receive, Scope, Send


def message_bytes(message: Message) -> int:
    """The response body bytes one ASGI message carries, or asks the server to send.

    >>> message_bytes({"type": "http.response.body", "body": b"abc"})
    3
    >>> message_bytes({"type": "http.response.pathsend", "path": __file__}) > 0
    True
    >>> with open(__file__, "rb") as f:
    ...     n = message_bytes({"type": "http.response.zerocopysend", "file": f, "offset": 10})
    ...     n == os.fstat(f.fileno()).st_size - 10
    True
    """
    kind = message.get("type")
    if kind == "http.response.body":
        return len(message.get("body", b""))
    try:
        if kind == ZEROCOPYSEND:
            file = message["file"]
            fd = file if isinstance(file, int) else file.fileno()
            offset = message.get("offset")
            if offset is None:  # the spec's default: from the file's current position
                offset = os.lseek(fd, 0, os.SEEK_CUR)
            left = max(0, os.fstat(fd).st_size - offset)
            count = message.get("count")
            return left if count is None else min(int(count), left)
        if kind == PATHSEND:
            return os.stat(message["path"]).st_size
    except (OSError, KeyError, TypeError, ValueError, AttributeError):
        return 0  # a malformed message is the server's to refuse; counting must not change that
    return 0


def count_bytes(app: ASGIApp, on_bytes: Callable[[int], object]) -> ASGIApp:
    """Wrap ``app`` so ``on_bytes(n)`` hears of every response body byte, fast path kept.

    ``on_bytes`` is called after each message's ``send`` returned (so a send
    that raised, a client gone, is not counted).

    >>> import asyncio
    >>> seen, out = [], []
    >>> async def app(scope, receive, send):
    ...     await send({"type": "http.response.start", "status": 200, "headers": []})
    ...     await send({"type": "http.response.pathsend", "path": __file__})
    >>> async def send(message):
    ...     out.append(message["type"])
    >>> asyncio.run(count_bytes(app, seen.append)({"type": "http"}, None, send))
    >>> out, seen == [os.stat(__file__).st_size]
    (['http.response.start', 'http.response.pathsend'], True)
    """

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return

        async def send_counted(message: Message) -> None:
            n = message_bytes(message)
            await send(message)  # every message, unchanged: unknown types included
            if n:
                on_bytes(n)

        await app(scope, receive, send_counted)

    return counted
