"""Request heads *and bodies* for the ASGI server: the static reader, streaming instead of dropping.

The static server's ``RequestReader`` keeps a few fields and discards bodies.
A malformed body queues a 400 request behind the running one (the base
``feed``): the server sees ``broken`` and tells the app the client is gone.
An ASGI app needs every field and every body byte, and it needs the request
as soon as its head is complete (the body may be large, or arrive slowly), so
``AsgiRequestReader`` queues an ``AsgiRequest`` at the end of its head and then
appends body chunks to it until the message completes. All the head limits
(414, 431, 400, Host rules) are the static reader's, unchanged.

>>> r = AsgiRequestReader()
>>> r.feed(b"POST /u HTTP/1.1\\r\\nHost: h\\r\\nContent-Length: 5\\r\\n\\r\\nab")
>>> req = r.ready[0]
>>> req.method, req.raw_headers[1], list(req.body), req.complete
('POST', (b'content-length', b'5'), [b'ab'], False)
>>> r.feed(b"cde"); list(req.body), req.complete
([b'ab', b'cde'], True)
"""

from __future__ import annotations

from collections import deque

from .. import simplehead
from ..parser import Request, RequestReader, _LimitExceeded


class AsgiRequest(Request):
    """A request head with all its fields, plus the body bytes received so far.

    >>> AsgiRequest().complete
    False
    """

    __slots__ = ("body", "buffered", "complete", "expect_continue", "raw_headers", "websocket")

    def __init__(self) -> None:
        super().__init__()
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.body: deque[bytes] = deque()
        self.buffered = 0  # bytes in ``body`` not yet handed to the app
        self.complete = False  # the whole message (head and body) has been parsed
        self.expect_continue = False
        self.websocket = False


class AsgiRequestReader(RequestReader):
    """``RequestReader`` that keeps every field and streams bodies into the request.

    ``ready`` holds requests whose head is complete, oldest first; the one being
    answered stays at the front until the server pops it.
    """

    __slots__ = ("_lines", "_lines_block")

    request_type = AsgiRequest  # the base reader makes one per head (one object per request)
    _cur: AsgiRequest

    def __init__(self) -> None:
        super().__init__(on_body=self._keep_body)
        # The field lines of the last simple head, split (``_took``): a keep-alive client
        # repeats them, and the same bytes split the same way.
        self._lines_block = b""
        self._lines: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools: one field; the static limits apply, and every field is kept."""
        super().on_header(name, value)
        key = name.lower()
        self._cur.raw_headers.append((key, value))
        if key == b"expect" and value.lower() == b"100-continue":
            self._cur.expect_continue = True
        elif key == b"upgrade" and value.lower() == b"websocket":
            self._cur.websocket = True

    def on_headers_complete(self) -> None:
        """httptools: the head is complete: the request can start before its body arrives."""
        super().on_headers_complete()
        cur = self._cur
        if cur.version == "1.0":
            cur.expect_continue = False  # RFC 9110 §10.1.1: ignore it from HTTP/1.0 clients
        self.ready.append(cur)
        if cur.error:
            self.broken = True
            raise _LimitExceeded

    def _took(self, req: Request, block: bytes) -> None:
        """A simple request (``simplehead``): every field kept, no body, complete."""
        assert isinstance(req, AsgiRequest)
        if block != self._lines_block:
            self._lines_block = block
            self._lines = simplehead.fields(block)
        req.raw_headers = self._lines.copy()  # the scope's list is the app's to change
        req.complete = True
        self.ready.append(req)

    def _keep_body(self, req: Request, body: bytes) -> None:
        """The base reader's body sink: every chunk is kept for the app (flow control is
        the server's job: it reads the socket only when the app asks for more)."""
        assert isinstance(req, AsgiRequest)
        req.body.append(body)
        req.buffered += len(body)

    def on_message_complete(self) -> None:
        """httptools: the body is complete (an Upgrade's message, too: it ends where the
        other protocol starts, and the base ``feed`` makes it the connection's last)."""
        self._cur.complete = True
        self.in_body = self.continue_due = False
