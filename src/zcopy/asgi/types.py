"""The ASGI shapes, spelled as Starlette spells them so its type checkers agree with ours."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The two ASGI extensions that hand a file to the server instead of its bytes.
PATHSEND = "http.response.pathsend"
ZEROCOPYSEND = "http.response.zerocopysend"
