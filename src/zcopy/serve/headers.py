"""Response head building, sans-IO: status line, Date/Server, representation fields.

Heads are bytes assembled from pieces that are cached where they can be: the
Date/Server block changes once a second, a file's representation fields
(Content-Type, Last-Modified, ETag, Accept-Ranges, Vary, Content-Encoding)
only when the file does.
"""

from __future__ import annotations

import mimetypes
import time
from http import HTTPStatus

from .. import __version__
from .conditional import http_date

SERVER = f"zcopy/{__version__}"
# The characters of an HTTP token (RFC 9110 §5.6.2), the one spelling every header-name
# check builds its pattern from (the app side's str, the ASGI server's bytes).
TOKEN_CHARS = r"!#$%&'*+\-.^_`|~0-9A-Za-z"

_STATUS = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in HTTPStatus}

# Text types that get an explicit charset (the listing and most source files are UTF-8).
_TEXT_LIKE = frozenset(
    {
        "application/javascript",
        "application/json",
        "application/xml",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/javascript",
    }
)


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <code> <phrase>\\r\\n``.

    >>> status_line(206)
    b'HTTP/1.1 206 Partial Content\\r\\n'
    """
    return _STATUS[status]


class DateBlock:
    """The ``Date`` and ``Server`` lines, rebuilt only when the second changes.

    >>> block = DateBlock(clock=lambda: 0.0)
    >>> block.get()
    b'Date: Thu, 01 Jan 1970 00:00:00 GMT\\r\\nServer: zcopy/0.1.0\\r\\n'
    """

    __slots__ = ("_clock", "_sec", "_value")

    def __init__(self, clock: object = time.time) -> None:
        self._clock = clock
        self._sec = -1
        self._value = b""

    def get(self) -> bytes:
        """The block for the current second."""
        now = self._clock()  # type: ignore[operator]
        sec = int(now)
        if sec != self._sec:
            self._sec = sec
            self._value = f"Date: {http_date(sec)}\r\nServer: {SERVER}\r\n".encode("ascii")
        return self._value


def content_type(name: str) -> str:
    """The Content-Type for a file name, with ``charset=utf-8`` for text.

    >>> content_type("a.txt"), content_type("a.bin"), content_type("x.json")
    ('text/plain; charset=utf-8', 'application/octet-stream', 'application/json; charset=utf-8')
    """
    ctype, _ = mimetypes.guess_type(name, strict=False)
    if ctype is None:
        return "application/octet-stream"
    if ctype.startswith("text/") or ctype in _TEXT_LIKE:
        return f"{ctype}; charset=utf-8"
    return ctype


def make_etag(mtime_ns: int, size: int, encoding: str = "") -> str:
    """A strong ETag from the file's mtime and size (and the coding of a sidecar).

    >>> make_etag(0x10, 0x20), make_etag(0x10, 0x20, "br")
    ('"10-20"', '"10-20-br"')
    """
    suffix = f"-{encoding}" if encoding else ""
    return f'"{mtime_ns:x}-{size:x}{suffix}"'


def representation_fields(
    ctype: str, etag: str, mtime: int, *, encoding: str = "", vary: bool = False
) -> bytes:
    """The header lines that describe a file, whatever the status.

    >>> representation_fields("text/plain", '"1-2"', 0, encoding="gzip", vary=True).decode()
    'Content-Type: text/plain\\r\\nLast-Modified: Thu, 01 Jan 1970 00:00:00 GMT\\r\\nETag: "1-2"\\r\\nAccept-Ranges: bytes\\r\\nContent-Encoding: gzip\\r\\nVary: Accept-Encoding\\r\\n'
    """  # noqa: E501
    lines = [
        f"Content-Type: {ctype}\r\n",
        f"Last-Modified: {http_date(mtime)}\r\n",
        f"ETag: {etag}\r\n",
        "Accept-Ranges: bytes\r\n",
    ]
    if encoding:
        lines.append(f"Content-Encoding: {encoding}\r\n")
    if vary:
        lines.append("Vary: Accept-Encoding\r\n")
    return "".join(lines).encode("latin-1")


def validator_fields(etag: str, mtime: int, *, vary: bool = False) -> bytes:
    """The fields a 304 repeats from the 200 it stands for (RFC 9110 §15.4.5).

    >>> validator_fields('"1-2"', 0)
    b'Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\\r\\nETag: "1-2"\\r\\n'
    """
    vary_line = "Vary: Accept-Encoding\r\n" if vary else ""
    return f"Last-Modified: {http_date(mtime)}\r\nETag: {etag}\r\n{vary_line}".encode("latin-1")


def connection_field(close: bool, http10: bool) -> bytes:
    """``Connection: close``, or ``keep-alive`` for an HTTP/1.0 client that asked for it.

    >>> connection_field(True, False), connection_field(False, False)
    (b'Connection: close\\r\\n', b'')
    """
    if close:
        return b"Connection: close\r\n"
    return b"Connection: keep-alive\r\n" if http10 else b""


def head(
    status: int,
    date_block: bytes,
    fields: bytes,
    length: int | None,
    connection: bytes,
) -> bytes:
    """Assemble a complete response head.

    >>> head(200, b"", b"", 3, b"")
    b'HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\n'
    """
    clen = b"" if length is None else b"Content-Length: %d\r\n" % length
    return b"".join((_STATUS[status], date_block, fields, clen, connection, b"\r\n"))


def simple_body(status: int, detail: str = "") -> bytes:
    """A small HTML body for an error or redirect status.

    >>> simple_body(404)
    b'<!doctype html><title>404 Not Found</title><h1>404 Not Found</h1>\\n'
    """
    import html

    phrase = HTTPStatus(status).phrase
    extra = f"<p>{html.escape(detail)}</p>" if detail else ""
    return f"<!doctype html><title>{status} {phrase}</title><h1>{status} {phrase}</h1>{extra}\n"\
        .encode()


_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "br": "application/x-brotli",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
}


def file_content_type(name: str) -> str:
    """Content-Type for a file served as is: ``x.txt.gz`` is a gzip file, not gzip-coded text.

    >>> file_content_type("a.txt.gz"), file_content_type("a.html")
    ('application/gzip', 'text/html; charset=utf-8')
    """
    _, enc = mimetypes.guess_type(name, strict=False)
    if enc is not None:
        return _COMPRESSED_TYPES.get(enc, "application/octet-stream")
    return content_type(name)


def negotiate(accept_encoding: str | None, available: tuple[str, ...]) -> str | None:
    """The first coding in ``available`` (server preference) that the client accepts.

    ``q=0`` refuses a coding; ``*`` stands for any coding not named.

    >>> negotiate("gzip, br;q=0.5", ("br", "gzip")), negotiate("br;q=0, *", ("br", "gzip"))
    ('br', 'gzip')
    >>> negotiate(None, ("gzip",)), negotiate("identity", ("gzip",))
    (None, None)
    """
    if not accept_encoding or not available:
        return None
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for p in params.split(";"):
            k, _, val = p.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(val.strip())
                except ValueError:
                    q = 0.0
        weights[name] = q
    star = weights.get("*", 0.0)
    for coding in available:
        if weights.get(coding, star) > 0:
            return coding
    return None
