"""HTTP/1.1 request heads from a byte stream: httptools underneath, our limits on top.

``RequestReader.feed`` turns received bytes into complete ``Request`` objects
(pipelining: one feed may complete several). A request that breaks a rule
becomes a ``Request`` whose ``error`` is the status to answer before closing:
400 (malformed), 414 (request line too long), 431 (header fields too large),
413 (a body on a GET larger than we are willing to discard).
"""

from __future__ import annotations

from collections import deque

import httptools

MAX_TARGET = 8190  # the request-target, like Apache's LimitRequestLine
MAX_FIELD = 8190  # one header field line
MAX_HEAD = 64 * 1024  # all header fields together (about: counted per received chunk)
MAX_FIELDS = 100
MAX_DISCARD = 1 << 20  # request body bytes we read and drop before giving up

# The only fields the server looks at; the rest are parsed and dropped.
WANTED = frozenset(
    {
        b"host",
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"accept-encoding",
        b"referer",
        b"user-agent",
    }
)


class Request:
    """One parsed request head. ``headers`` keeps only the fields in ``WANTED``.

    >>> r = RequestReader(); r.feed(b"GET /x HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n"); req = r.ready[0]
    >>> req.method, req.target, req.headers["host"], req.keep_alive
    ('GET', b'/x', 'a', True)
    """

    __slots__ = ("error", "headers", "keep_alive", "method", "target", "version")

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.version = "1.1"
        self.keep_alive = True
        self.headers: dict[str, str] = {}
        self.error = 0  # non-zero: answer with this status, then close

    @property
    def request_line(self) -> str:
        """The request line as the access log prints it."""
        target = self.target.decode("latin-1")
        return f"{self.method} {target} HTTP/{self.version}"


class _LimitExceeded(Exception):
    pass


class RequestReader:
    """Feed bytes in, take complete requests out of ``ready``.

    >>> r = RequestReader()
    >>> r.feed(b"GET /a HTTP/1.1\\r\\nHost: h\\r\\n\\r\\nGET /b HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n")
    >>> [q.target for q in r.ready]
    [b'/a', b'/b']
    """

    __slots__ = (
        "_body",
        "_cur",
        "_fields",
        "_head",
        "_hosts",
        "_parser",
        "_raw",
        "_url",
        "broken",
        "in_head",
        "ready",
    )

    def __init__(self) -> None:
        self.ready: deque[Request] = deque()
        self.in_head = False  # part of a request head has arrived, not all of it
        self.broken = False  # an error request was queued: feed nothing more
        self._cur = Request()
        self._url = bytearray()
        self._fields = 0
        self._head = 0
        self._body = 0
        self._hosts = 0
        self._raw = 0
        self._parser = httptools.HttpRequestParser(self)

    # httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        """httptools: a new request starts."""
        self._cur = Request()
        self._url.clear()
        self._fields = self._head = self._body = self._hosts = self._raw = 0
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        """httptools: a piece of the request-target (414 past the limit)."""
        self._url += url
        if len(self._url) > MAX_TARGET:
            self._fail(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools: one complete field (431 past the limits)."""
        self._fields += 1
        self._head += len(name) + len(value) + 4
        if len(name) + len(value) + 2 > MAX_FIELD or self._fields > MAX_FIELDS:
            self._fail(431)
        if self._head > MAX_HEAD:
            self._fail(431)
        key = name.lower()
        if key in WANTED:
            k = key.decode("ascii")
            v = value.decode("latin-1")
            headers = self._cur.headers
            if k == "host":
                self._hosts += 1
            headers[k] = f"{headers[k]}, {v}" if k in headers else v

    def on_headers_complete(self) -> None:
        """httptools: the head is complete; method, version, keep-alive are known."""
        cur = self._cur
        p = self._parser
        cur.method = p.get_method().decode("ascii", "replace")
        cur.version = p.get_http_version()
        cur.keep_alive = p.should_keep_alive()
        cur.target = bytes(self._url)
        self.in_head = False
        if cur.version == "1.1" and self._hosts != 1:
            cur.error = 400  # RFC 9112 §3.2: exactly one Host in HTTP/1.1

    def on_body(self, body: bytes) -> None:
        """httptools: request body bytes, discarded (413 past the limit)."""
        self._body += len(body)
        if self._body > MAX_DISCARD:
            self._fail(413)

    def on_message_complete(self) -> None:
        """httptools: the request is complete: queue it."""
        self.ready.append(self._cur)
        if self._cur.error:
            self.broken = True
            raise _LimitExceeded

    # ---------------------------------------------------------------------------------

    def _fail(self, status: int) -> None:
        self._cur.error = status
        raise _LimitExceeded

    def _queue_error(self, status: int) -> None:
        req = self._cur if self._cur.error else Request()
        req.error = req.error or status
        req.keep_alive = False
        if not req.method:
            req.method = "-"
        if not req.target:
            req.target = bytes(self._url[:200])
        if not self.ready or self.ready[-1] is not req:
            self.ready.append(req)
        self.broken = True

    def feed(self, data: bytes) -> None:
        """Parse received bytes; complete requests (or one error request) land in ``ready``."""
        if self.broken:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An Upgrade or CONNECT: what follows is not HTTP/1.1, so this is the last request.
            if self.ready:
                self.ready[-1].keep_alive = False
            else:
                self._queue_error(400)
            self.broken = True
            return
        except httptools.HttpParserCallbackError:
            self._queue_error(self._cur.error or 400)
            return
        except httptools.HttpParserError:
            self._queue_error(400)
            return
        if self.in_head:
            # A field still being accumulated inside httptools is invisible to on_header:
            # bound the raw bytes (over-counted by at most the chunk the head began in).
            self._raw += len(data)
            if self._raw > MAX_HEAD + 65536:
                self._queue_error(414 if len(self._url) > MAX_TARGET else 431)
