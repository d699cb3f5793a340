"""An ASGI ``http.response.start`` turned into an HTTP/1.1 head and a framing, sans-IO.

The app chooses status and fields; the server chooses how the body is
delimited (``Framing``): the app's Content-Length when it gave one, chunked
for an HTTP/1.1 client otherwise, the end of the connection for an HTTP/1.0
client, and no body at all for HEAD, 1xx, 204 and 304. Fields that are the
connection's business (Connection, Transfer-Encoding, Keep-Alive) are the
server's: the app's are dropped. A field that would split the head (CR, LF or
NUL in it, or a name that is not a token) is a ``BadResponse``, never sent.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

_PHRASES = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_HOP = frozenset({b"connection", b"transfer-encoding", b"keep-alive"})
_BAD_VALUE = re.compile(rb"[\r\n\x00]")

LAST_CHUNK = b"0\r\n\r\n"


class Framing(enum.Enum):
    """How the receiver finds the end of the body, and why it was chosen."""

    LENGTH = "the app's Content-Length"
    CHUNKED = "no Content-Length from the app: chunked transfer coding"
    UNTIL_CLOSE = "no Content-Length for an HTTP/1.0 client: the body ends at close"
    NONE = "HEAD, 1xx, 204 or 304: no body bytes, whatever the app sends"


class BadResponse(ValueError):
    """The app's ``http.response.start`` cannot be sent as it is."""


@dataclass(slots=True)
class ResponseHead:
    """The head to write, how the body is framed, and whether the connection survives."""

    data: bytes
    status: int
    framing: Framing
    length: int | None  # Content-Length, when the app gave one
    keep_alive: bool


def _content_length(value: bytes, seen: int | None) -> int:
    text = value.strip()
    if not text.isdigit():
        raise BadResponse(f"Content-Length {value[:40]!r} is not a number")
    n = int(text)
    if seen is not None and seen != n:
        raise BadResponse(f"two different Content-Length fields: {seen} and {n}")
    return n


@dataclass(frozen=True, slots=True)
class AppFields:
    """The checked part of a head the app decides: status line and its fields, and their facts."""

    data: bytes  # the status line and the app's own fields, CRLF-terminated
    length: int | None  # the app's Content-Length
    own_date: bool
    own_server: bool
    close: bool  # the app said ``Connection: close``


# Checked heads by (status, fields): most apps answer with a few head shapes (a hello, a
# JSON page), and checking every name and value costs more than the rest of ``start``.
_CHECKED: dict[tuple[int, tuple[Any, ...]], AppFields] = {}
CHECKED_MAX = 256  # then forgotten at once: a cache, never a leak (heads with a varying
# Content-Range or ETag miss it, and find their other fields in ``_FIELDS``)
Checked = tuple[bytes, bytes, bytes]  # a field's lower-case name, its value, its line
_FIELDS: dict[Any, Checked] = {}  # (name, value) -> its checked facts


def _field(pair: Iterable[bytes]) -> Checked:
    """One app field checked: its lower-case name, its value and its CRLF-terminated line."""
    try:
        name, value = pair
    except (TypeError, ValueError):
        raise BadResponse(f"a header must be a (name, value) pair, not {pair!r}") from None
    if not isinstance(name, bytes | bytearray) or not isinstance(value, bytes | bytearray):
        raise BadResponse(f"header name and value must be bytes, not {pair!r}")
    if not _TOKEN.match(name) or _BAD_VALUE.search(value):
        raise BadResponse(f"header {bytes(name)[:40]!r} would corrupt the response head")
    return bytes(name).lower(), bytes(value), b"%s: %s\r\n" % (name, value)


def app_fields(
    status: int,
    fields: Iterable[Iterable[bytes]],
    memo: dict[Any, Checked] | None = None,
) -> AppFields:
    """Check the app's status line and fields; ``BadResponse`` for one that would corrupt the head.

    ``memo`` remembers each checked field (the caller vouches that every pair is a
    tuple of two ``bytes``).

    >>> app_fields(200, [(b"Connection", b"close"), (b"X", b"1")])
    AppFields(data=b'HTTP/1.1 200 OK\\r\\nX: 1\\r\\n', length=None, own_date=False, own_server=False, close=True)
    """  # noqa: E501
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, b""))]
    length: int | None = None
    own_date = own_server = close = False
    for pair in fields:
        known = memo.get(pair) if memo is not None else None
        if known is None:
            known = _field(pair)
            if memo is not None:
                if len(memo) >= CHECKED_MAX:
                    memo.clear()
                memo[pair] = known
        key, value, line = known
        if key in _HOP:
            if key == b"connection" and b"close" in value.lower():
                close = True
            continue
        if key == b"content-length":
            length = _content_length(value, length)
        elif key == b"date":
            own_date = True
        elif key == b"server":
            own_server = True
        lines.append(line)
    return AppFields(b"".join(lines), length, own_date, own_server, close)


def checked(status: int, fields: Iterable[Iterable[bytes]]) -> AppFields:
    """``app_fields``, remembered for fields that are all ``bytes`` (hashable, immutable).

    A whole head is remembered, and each field of it: a head that differs in one
    field from the last (a ``Content-Range``, an ``ETag``) checks that field only.

    >>> checked(200, [(b"a", b"1")]) is checked(200, ((b"a", b"1"),))
    True
    """
    items = tuple(fields)
    for pair in items:
        # Only tuples of two bytes: a bytes-equal memoryview or a list must be checked itself.
        if type(pair) is not tuple or len(pair) != 2:
            return app_fields(status, items)
        name, value = pair
        if type(name) is not bytes or type(value) is not bytes:
            return app_fields(status, items)
    key = (status, items)
    found = _CHECKED.get(key)
    if found is None:
        found = app_fields(status, items, _FIELDS)
        if len(_CHECKED) >= CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[key] = found
    return found


def start(
    status: object,
    fields: Iterable[Iterable[bytes]],
    *,
    head_request: bool,
    http10: bool,
    keep_alive: bool,
    date_block: bytes,
) -> ResponseHead:
    """Plan the response head for ``status`` and the app's ``fields``.

    ``date_block`` holds the server's Date and Server lines (each dropped
    when the app gives its own).

    >>> h = start(200, [(b"content-type", b"text/plain")], head_request=False,
    ...           http10=False, keep_alive=True, date_block=b"")
    >>> h.data, h.framing.name
    (b'HTTP/1.1 200 OK\\r\\ncontent-type: text/plain\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n', 'CHUNKED')
    >>> start(204, [], head_request=False, http10=False, keep_alive=False, date_block=b"").data
    b'HTTP/1.1 204 No Content\\r\\nConnection: close\\r\\n\\r\\n'
    """  # noqa: E501
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise BadResponse(f"status must be an int from 200 to 599, not {status!r}")
    app = checked(int(status), fields)  # HTTPStatus.OK keys the cache as 200
    length = app.length
    if app.close:
        keep_alive = False
    lines = [app.data]
    if date_block and not (app.own_date or app.own_server):
        lines.append(date_block)  # the usual case: no need to look inside
    elif date_block:
        for line in date_block.splitlines(keepends=True):
            if not (app.own_date and line.startswith(b"Date:")) and not (
                app.own_server and line.startswith(b"Server:")
            ):
                lines.append(line)
    if head_request or status in (204, 304):
        framing = Framing.NONE
    elif length is not None:
        framing = Framing.LENGTH
    elif http10:
        framing = Framing.UNTIL_CLOSE
        keep_alive = False
    else:
        framing = Framing.CHUNKED
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if not keep_alive:
        lines.append(b"Connection: close\r\n")
    elif http10:
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(b"\r\n")
    return ResponseHead(b"".join(lines), status, framing, length, keep_alive)


def chunk(data: bytes | bytearray | memoryview) -> bytes:
    """One chunk of a chunked body (never empty: an empty chunk would end the body).

    >>> chunk(b"hello")
    b'5\\r\\nhello\\r\\n'
    """
    return b"%x\r\n%s\r\n" % (len(data), data)


def chunk_size_line(n: int) -> bytes:
    """The line that starts a chunk whose data is sent separately (a file section).

    >>> chunk_size_line(4096)
    b'1000\\r\\n'
    """
    return b"%x\r\n" % n
