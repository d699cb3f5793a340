"""HTTP/1.1 request heads from a byte stream: httptools underneath, our limits on top.

``RequestReader.feed`` turns received bytes into complete ``Request`` objects
(pipelining: one feed may complete several). A request that breaks a rule
becomes a ``Request`` whose ``error`` is the status to answer before closing:
400 (malformed: also an HTTP/0.9-style request line, a ``Host`` that is not a
valid authority, ``Transfer-Encoding`` in HTTP/1.0), 414 (request line too
long), 431 (header fields too large), 413 (a request body larger than we are
willing to discard), 501 (a method token the parser does not know), 505 (an
HTTP version other than 1.0 and 1.1).

The reader also says where the connection is, for the timeouts: ``in_head``
(part of a head has arrived), ``in_body`` (a head is complete, its body is
not), and ``continue_due`` (the client waits for ``100 Continue``).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import ClassVar

import httptools

from . import simplehead

MAX_TARGET = 8190  # the request-target, like Apache's LimitRequestLine
MAX_FIELD = 8190  # one header field line
MAX_HEAD = 64 * 1024  # all header fields together (about: counted per received chunk)
MAX_FIELDS = 100
MAX_DISCARD = 1 << 20  # request body bytes we read and drop before giving up
MAX_LINE_PROBE = 16 * 1024  # bytes watched for a version-less (HTTP/0.9) first request line

# RFC 9110 §7.2 / RFC 3986 §3.2: uri-host [ ":" port ]; an empty value is allowed
# (RFC 9112 §3.2: the target URI has no authority).
_HOST = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"
    r"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?"
)

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
# A field name as sent (any case) -> its key in ``Request.headers``, "" for a field the
# server does not read, _FRAMING for one that makes a head not simple (simplehead.FRAMING):
# the one-step path looks each name up once, not lowercases it. Names come from clients,
# so only the first _KEYS_MAX distinct ones are remembered.
_KEYS: dict[bytes, str] = {}
_KEYS_MAX = 512
_FRAMING = "\n"  # no field name holds a line feed


def _key(name: bytes) -> str:
    """``_KEYS``' entry for a field name (stored while there is room).

    >>> _key(b"Host"), _key(b"X-Anything"), _key(b"CONNECTION") == _FRAMING
    ('host', '', True)
    """
    lower = name.lower()
    if lower in simplehead.FRAMING:
        key = _FRAMING
    else:
        key = lower.decode("ascii") if lower in WANTED else ""
    if len(_KEYS) < _KEYS_MAX:
        _KEYS[name] = key
    return key


# The names that matter, as clients spell them, are in the table before any client speaks:
# one that invents _KEYS_MAX names cannot leave Host or Range to be lowercased per request.
_COMMON = WANTED | simplehead.FRAMING | {
    b"accept", b"accept-language", b"cache-control", b"cookie", b"dnt", b"origin",
    b"pragma", b"priority", b"sec-fetch-dest", b"sec-fetch-mode", b"sec-fetch-site",
    b"sec-fetch-user", b"te", b"upgrade-insecure-requests", b"x-forwarded-for",
    b"x-forwarded-proto", b"x-real-ip", b"x-request-id",
}  # fmt: skip
for _name in sorted(_COMMON):
    for _spelling in (_name, _name.title(), _name.upper()):
        _key(_spelling)


# A complete request line: method token, target, version (RFC 9112 §3).
_REQUEST_LINE = re.compile(rb"(?m)^([!#$%&'*+.^_`|~0-9A-Za-z-]+) [^ \r\n]+ HTTP/[0-9]\.[0-9]\r?$")
# Methods httptools parses; a request line with any other token is a 501, not garbage.
_PARSED_METHODS = frozenset(
    b"GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PROPFIND PROPPATCH MKCOL COPY MOVE "
    b"LOCK UNLOCK SEARCH PURGE".split()
)

# Fields that mean nothing twice. A repeated ``Range`` is dropped (the whole
# representation is sent: ignoring Range is always allowed, RFC 9110 §14.2); a
# repeated ``Host`` is a 400 (RFC 9112 §3.2).
_SINGLE = frozenset({"host", "range"})


def valid_host(value: str) -> bool:
    """Whether a ``Host`` field value is a valid authority (RFC 9112 §3.2, RFC 3986 §3.2).

    >>> valid_host("example.com:8080"), valid_host("[::1]:80"), valid_host("")
    (True, True, True)
    >>> valid_host("a b"), valid_host("a/b"), valid_host("h:80x"), valid_host("x@y")
    (False, False, False, False)
    """
    return _HOST.fullmatch(value) is not None


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


BodySink = Callable[[Request, bytes], None]


class RequestReader:
    """Feed bytes in, take complete requests out of ``ready``.

    Request bodies are read and dropped up to ``max_body`` bytes, unless
    ``on_body`` is given: then every chunk goes to it as it arrives (an
    application server streams uploads this way), and ``on_head`` sees each
    request as soon as its head is complete and valid.

    >>> r = RequestReader()
    >>> r.feed(b"GET /a HTTP/1.1\\r\\nHost: h\\r\\n\\r\\nGET /b HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n")
    >>> [q.target for q in r.ready]
    [b'/a', b'/b']
    """

    __slots__ = (
        "_block",
        "_block_fields",
        "_body",
        "_clen",
        "_closing",
        "_cur",
        "_expect",
        "_fields",
        "_good_host",
        "_head",
        "_hosts",
        "_parser",
        "_probe",
        "_raw",
        "_repeated",
        "_te",
        "_url",
        "body_sink",
        "broken",
        "continue_due",
        "head_sink",
        "in_body",
        "in_head",
        "max_body",
        "ready",
    )

    request_type: ClassVar[type[Request]] = Request  # what each head fills (a subclass: more)
    one_step: ClassVar[bool] = True  # take simple heads without the full parser (simplehead)

    def __init__(
        self,
        *,
        max_body: int = MAX_DISCARD,
        on_head: Callable[[Request], None] | None = None,
        on_body: BodySink | None = None,
    ) -> None:
        self.ready: deque[Request] = deque()
        self.in_head = False  # part of a request head has arrived, not all of it
        self.in_body = False  # a head is complete, its body is not
        self.continue_due = False  # the head asked for 100 Continue and the body is awaited
        self.broken = False  # an error request was queued: feed nothing more
        self.max_body = max_body
        self.head_sink = on_head
        self.body_sink = on_body
        self._cur = Request()
        self._url = bytearray()
        self._fields = 0
        self._head = 0
        self._body = 0
        self._hosts = 0
        self._raw = 0
        self._clen = -1
        self._te = False
        self._expect = False
        self._repeated = False
        self._good_host = ""
        # The field lines of the last simple head taken, and the fields they gave (``_take``).
        self._block = b""
        self._block_fields: dict[str, str] = {}
        self._closing = False  # a head without keep-alive was parsed: no one-step path after it
        # Bytes of the first request line, until its version is known (None: done watching).
        self._probe: bytearray | None = bytearray()
        self._parser = httptools.HttpRequestParser(self)

    # httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        """httptools: a new request starts."""
        self._cur = self.request_type()
        self._url.clear()
        self._fields = self._head = self._body = self._hosts = self._raw = 0
        self._clen = -1
        self._te = self._expect = self._repeated = False
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
        self._probe = None  # a field line: the request line had a version
        key = name.lower()
        if key in WANTED:
            k = key.decode("ascii")
            v = value.decode("latin-1")
            headers = self._cur.headers
            if k in _SINGLE and k in headers:
                if k == "host":
                    self._fail(400)  # RFC 9112 §3.2: exactly one Host
                self._repeated = True
                return  # a repeated Range is dropped: no need to join it
            if k == "host":
                self._hosts += 1
                # A keep-alive client repeats its Host: checked once per value, not per request.
                if v != self._good_host:
                    if not valid_host(v.strip(" \t")):
                        self._fail(400)
                    self._good_host = v
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        elif key == b"content-length":
            self._clen = int(value) if value.isdigit() and len(value) < 19 else -1
        elif key == b"transfer-encoding":
            self._te = True
        elif key == b"expect":
            self._expect = value.strip().lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        """httptools: the head is complete; method, version, keep-alive are known."""
        cur = self._cur
        p = self._parser
        cur.method = p.get_method().decode("ascii", "replace")
        cur.version = p.get_http_version()
        cur.keep_alive = p.should_keep_alive()
        if not cur.keep_alive:
            self._closing = True  # the full parser refuses what follows: let it
        cur.target = bytes(self._url)
        self.in_head = False
        self._probe = None
        version = cur.version
        if version == "1.1":
            if self._hosts != 1:
                self._fail(400)  # RFC 9112 §3.2: exactly one Host in HTTP/1.1
        elif version == "1.0":
            if self._te:
                # RFC 9112 §6.1: the framing cannot be trusted; the connection must close.
                self._fail(400)
        else:
            # 0.9: a request line without a version (answered as HTTP/1.1: RFC 9112 §2.3)
            self._fail(505 if version >= "2" else 400)
        if self._clen > self.max_body and self.body_sink is None:
            self._fail(413)  # no need to read a body we will refuse anyway
        if self._repeated:
            del cur.headers["range"]  # documented: a repeated Range is ignored
        self.in_body = True  # until on_message_complete, which may follow at once
        if self._expect:
            # RFC 9110 §10.1.1: an HTTP/1.0 client's Expect is ignored.
            self.continue_due = version == "1.1"
        if self.head_sink is not None:
            self.head_sink(cur)

    def on_body(self, body: bytes) -> None:
        """httptools: body bytes, streamed to ``on_body`` or dropped (413 past the limit)."""
        self.continue_due = False  # the client sent the body without waiting
        if self.body_sink is not None:
            self.body_sink(self._cur, body)
            return
        self._body += len(body)
        if self._body > self.max_body:
            self._fail(413)

    def on_message_complete(self) -> None:
        """httptools: the request is complete: queue it."""
        self.in_body = self.continue_due = False
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
        self.in_head = self.in_body = self.continue_due = False

    def feed(self, data: bytes) -> None:
        """Parse received bytes; complete requests (or one error request) land in ``ready``.

        While the full parser is between messages, heads of the common shape
        (``simplehead``) are taken in one step; the first other byte and all after
        it go to the full parser, which is then where it would be had it parsed the
        simple heads itself: at the start of a message.
        """
        if self.broken:
            return
        pos = 0  # bytes of simple heads taken from the front of this chunk
        if self.one_step and not (self.in_head or self.in_body or self._closing):
            end = len(data)
            while (head := simplehead.match(data, pos)) is not None and self._take(head):
                pos = head[3]
                if pos == end:
                    return  # the usual case: whole heads, nothing after them
            if pos:
                data = data[pos:]
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
        except httptools.HttpParserInvalidMethodError:
            # RFC 9110 §9.1: a well-formed request with a method we do not know is a 501;
            # bytes that are no request line at all (a TLS hello, noise) are a 400.
            lines = _REQUEST_LINE.finditer(data)
            unknown = any(m[1] not in _PARSED_METHODS for m in lines)
            self._queue_error(501 if unknown else 400)
            return
        except httptools.HttpParserError as exc:
            # "PRI * HTTP/2.0": the HTTP/2 connection preface, spoken without asking first
            self._queue_error(505 if "PRI" in str(exc) else 400)
            return
        if self._probe is not None and self.in_head:
            self._check_request_line(data)
        if self.in_head:
            # A field still being accumulated inside httptools is invisible to on_header:
            # bound the raw bytes (over-counted by at most the chunk the head began in).
            # The simple heads taken from it count too: the full parser alone counts them.
            self._raw += pos + len(data)
            if self._raw > MAX_HEAD + 65536:
                self._queue_error(414 if len(self._url) > MAX_TARGET else 431)

    def _take(self, head: simplehead.Head) -> bool:
        """Queue a simple head as the full parser's callbacks would; ``False``: leave it to them.

        Left to them: no Host, a Host that is no authority, a wanted field given twice
        (joined, or a 400 for Host): the rules and errors are theirs. And every head when
        ``on_head`` is set: it runs inside their callback (the reader in the body state, an
        exception from it a 400), and a sink must meet that whichever path the bytes take.
        """
        if self.head_sink is not None:
            return False
        method, target, block, _ = head
        if block == self._block:
            # A keep-alive client sends the same fields request after request (Host,
            # User-Agent, Accept...): the same bytes give the same fields, checked once.
            fields = self._block_fields.copy()
        else:
            fields = {}
            for name, value in simplehead.FIELD.findall(block):
                key = _KEYS.get(name)
                if key is None:
                    key = _key(name)
                if key:
                    if key in fields or key == _FRAMING:
                        return False  # the full parser's: a repeated field, or the framing
                    fields[key] = value.decode("latin-1")
            host = fields.get("host")
            if host is None:
                return False
            if host != self._good_host:
                if not valid_host(host):
                    return False
                self._good_host = host
            self._block = block
            self._block_fields = fields.copy()  # its own copy: a request's may be changed
        req = self.request_type()
        req.method = method
        req.target = target
        req.headers = fields
        self._probe = None  # a version was seen: no HTTP/0.9 request line to watch for
        self._took(req, block)
        return True

    def _took(self, req: Request, block: bytes) -> None:
        """A simple request is complete (it has no body): queue it. ``block``: its field lines."""
        self.ready.append(req)

    def _check_request_line(self, data: bytes) -> None:
        """An HTTP/0.9-style first request line (``GET /``, no version) gets a prompt 400.

        httptools would wait for header fields after it. Until the version is
        parsed the parser reports 0.0, so a line end after the (leading empty
        lines and the) method and target means there was no version. Watched
        only for a connection's first request: later ones reuse the version field.
        """
        probe = self._probe
        assert probe is not None
        probe += data
        if self._parser.get_http_version() != "0.0" or len(probe) > MAX_LINE_PROBE:
            self._probe = None
        elif b"\n" in probe.lstrip(b"\r\n"):
            self._queue_error(400)
