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

from ..headers import TOKEN_CHARS

_PHRASES = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_STATUS_LINES = {n: b"HTTP/1.1 %d %s\r\n" % (n, phrase) for n, phrase in _PHRASES.items()}
_TOKEN = re.compile(f"[{TOKEN_CHARS}]+\\Z".encode("ascii"))
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


def _content_length(value: bytes | bytearray, seen: int | None) -> int:
    text = value.strip()
    if not text.isdigit():
        raise BadResponse(f"Content-Length {bytes(value[:40])!r} is not a number")
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


# What a checked field does to the head (``Field``): most are only a line to copy.
_COPY, _LENGTH, _DATE, _SERVER, _HOP_CLOSE, _HOP_DROP = range(6)
# A checked field: its CRLF-terminated line, what it does, its Content-Length, the pair
Field = tuple[bytes, int, int, object]
# Checked fields by their (name, value) pair: most heads repeat their fields (a type, an
# ETag), and checking a name and a value costs more than the rest of ``start``. A head
# new in one field (a ranged answer's Content-Range) checks that field only.
_FIELDS: dict[Any, Field] = {}
CHECKED_MAX = 256  # then forgotten at once: a cache, never a leak


def _field(pair: Iterable[bytes]) -> tuple[bytes, int, int]:
    """One app field checked (``BadResponse`` if it would corrupt the head): its ``Field``."""
    try:
        name, value = pair
    except (TypeError, ValueError):
        raise BadResponse(f"a header must be a (name, value) pair, not {pair!r}") from None
    if not isinstance(name, bytes | bytearray) or not isinstance(value, bytes | bytearray):
        raise BadResponse(f"header name and value must be bytes, not {pair!r}")
    if not _TOKEN.match(name) or _BAD_VALUE.search(value):
        raise BadResponse(f"header {bytes(name)[:40]!r} would corrupt the response head")
    key = bytes(name).lower()
    line = b"%s: %s\r\n" % (name, value)
    if key in _HOP:
        close = key == b"connection" and b"close" in value.lower()
        return line, _HOP_CLOSE if close else _HOP_DROP, 0
    if key == b"content-length":
        return line, _LENGTH, _content_length(value, None)
    if key == b"date":
        return line, _DATE, 0
    if key == b"server":
        return line, _SERVER, 0
    return line, _COPY, 0


def _remember(pair: Any) -> Field:
    """``pair`` checked, and remembered (with ``pair`` itself) when it is two exact ``bytes``."""
    if type(pair) is tuple and len(pair) == 2 and type(pair[0]) is bytes is type(pair[1]):
        known = _FIELDS.get(pair)
        if known is not None:  # equal bytes, exactly bytes: the same line and facts
            known = (known[0], known[1], known[2], pair)
        else:
            known = (*_field(pair), pair)
            if len(_FIELDS) >= CHECKED_MAX:
                _FIELDS.clear()
        _FIELDS[pair] = known
        return known
    return (*_field(pair), pair)


def checked(status: int, fields: Iterable[Iterable[bytes]]) -> AppFields:
    """Check the app's status line and fields; ``BadResponse`` for one that would corrupt the head.

    A field that is a tuple of two ``bytes`` (hashable, immutable) is checked
    once and remembered; any other shape (a list, a ``bytearray``, a
    ``memoryview`` equal to remembered bytes) is checked every time.

    >>> checked(200, [(b"Connection", b"close"), (b"X", b"1")])
    AppFields(data=b'HTTP/1.1 200 OK\\r\\nX: 1\\r\\n', length=None, own_date=False, own_server=False, close=True)
    """  # noqa: E501
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, b""))]
    facts = _scan(fields, lines)
    return AppFields(b"".join(lines), *facts)


def _scan(
    fields: Iterable[Iterable[bytes]], lines: list[bytes]
) -> tuple[int | None, bool, bool, bool]:
    """``checked``'s work: append the lines to copy; Content-Length, own Date, own Server, close."""
    length: int | None = None
    own_date = own_server = close = False
    memo = _FIELDS
    for pair in fields:
        try:
            known = memo.get(pair)
        except TypeError:  # unhashable (a list, a bytearray): checked every time, below
            known = None
        # The very pair checked before (an app that keeps its header tuples, as
        # zcopy.asgi.FileResponse does) is known by identity; an equal one only after
        # its types are seen to be exactly bytes: a lookalike is checked itself.
        if known is None or known[3] is not pair:
            known = _remember(pair)
        line, does, number, _ = known
        if does == _COPY:
            lines.append(line)
            continue
        if does == _LENGTH:
            if length is not None and length != number:
                raise BadResponse(f"two different Content-Length fields: {length} and {number}")
            length = number
        elif does == _DATE:
            own_date = True
        elif does == _SERVER:
            own_server = True
        else:  # hop-by-hop: the server's business, never copied
            close = close or does == _HOP_CLOSE
            continue
        lines.append(line)
    return length, own_date, own_server, close


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
    status = int(status)  # HTTPStatus.OK is 200
    lines = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status]
    length, own_date, own_server, close = _scan(fields, lines)
    if close:
        keep_alive = False
    if date_block and not (own_date or own_server):
        lines.append(date_block)  # the usual case: no need to look inside
    elif date_block:
        for line in date_block.splitlines(keepends=True):
            if not (own_date and line.startswith(b"Date:")) and not (
                own_server and line.startswith(b"Server:")
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
