"""Response head building and content negotiation, table-driven; heads on the wire."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from serve_util import ServeProc, get

from zcopy.serve import headers


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("a.txt", "text/plain; charset=utf-8"),
        ("a.html", "text/html; charset=utf-8"),
        ("a.css", "text/css; charset=utf-8"),
        ("a.js", "text/javascript; charset=utf-8"),
        ("a.json", "application/json; charset=utf-8"),
        ("a.svg", "image/svg+xml; charset=utf-8"),
        ("a.png", "image/png"),
        ("a.pdf", "application/pdf"),
        ("noext", "application/octet-stream"),
        ("a.tar.gz", "application/gzip"),
        ("a.txt.br", "application/x-brotli"),
        ("A.TXT", "text/plain; charset=utf-8"),
    ],
)
def test_file_content_type(name: str, ctype: str) -> None:
    assert headers.file_content_type(name) == ctype


@pytest.mark.parametrize(
    ("accept", "available", "chosen"),
    [
        (None, ("br", "gzip"), None),
        ("", ("br", "gzip"), None),
        ("gzip", ("br", "gzip"), "gzip"),
        ("br", ("br", "gzip"), "br"),
        ("gzip, br", ("br", "gzip"), "br"),  # server preference among the accepted
        ("br;q=0, gzip", ("br", "gzip"), "gzip"),
        ("BR;Q=0, GZIP;q=0.1", ("br", "gzip"), "gzip"),
        ("*", ("br", "gzip"), "br"),
        ("*, br;q=0", ("br", "gzip"), "gzip"),
        ("gzip;q=0", ("gzip",), None),
        ("identity", ("gzip",), None),
        ("gzip;q=bogus", ("gzip",), None),
        ("gzip", (), None),
    ],
)
def test_negotiate(accept: str | None, available: tuple[str, ...], chosen: str | None) -> None:
    assert headers.negotiate(accept, available) == chosen


def test_head_layout() -> None:
    block = headers.DateBlock(clock=lambda: 784111777.0).get()
    fields = headers.representation_fields("text/plain", '"1-2"', 784111777)
    head = headers.head(200, block, fields, 12, headers.connection_field(False, False))
    assert head == (
        b"HTTP/1.1 200 OK\r\n"
        b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        + f"Server: zcopy/{importlib.metadata.version('zcopy')}\r\n".encode()
        + b"Content-Type: text/plain\r\n"
        b"Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        b'ETag: "1-2"\r\n'
        b"Accept-Ranges: bytes\r\n"
        b"Content-Length: 12\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize(
    ("close", "http10", "line"),
    [
        (True, False, b"Connection: close\r\n"),
        (True, True, b"Connection: close\r\n"),
        (False, False, b""),
        (False, True, b"Connection: keep-alive\r\n"),
    ],
)
def test_connection_field(close: bool, http10: bool, line: bytes) -> None:
    assert headers.connection_field(close, http10) == line


def test_date_block_changes_with_the_second() -> None:
    now = [0.2]
    block = headers.DateBlock(clock=lambda: now[0])
    first = block.get()
    now[0] = 0.9
    assert block.get() is first  # same second: the cached bytes
    now[0] = 1.0
    assert block.get() != first


def test_etag_changes_with_content_identity() -> None:
    assert headers.make_etag(1, 2) != headers.make_etag(1, 3)
    assert headers.make_etag(1, 2) != headers.make_etag(2, 2)
    assert headers.make_etag(1, 2) != headers.make_etag(1, 2, "gzip")


def test_status_lines() -> None:
    for code in (200, 206, 301, 304, 400, 403, 404, 405, 412, 414, 416, 431, 503):
        line = headers.status_line(code)
        assert line.startswith(b"HTTP/1.1 %d " % code) and line.endswith(b"\r\n")


def test_heads_on_the_wire(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_bytes(b"<p>hi</p>")
    with ServeProc(tmp_path) as proc:
        r = get(proc.port, "/page.html")
        h304 = get(proc.port, "/page.html", {"If-None-Match": r.headers["etag"]})
        h404 = get(proc.port, "/nope")
    assert r.raw_head.startswith(b"HTTP/1.1 200 OK\r\nDate: ")
    assert r.raw_head.endswith(b"\r\n\r\n") and r.raw_head.count(b"\r\n\r\n") == 1
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-length"] == "9"
    assert set(h304.headers) >= {"date", "server", "etag", "last-modified"}
    assert "content-type" not in h304.headers and "content-length" not in h304.headers
    assert h404.headers["content-type"] == "text/html; charset=utf-8"
    assert int(h404.headers["content-length"]) == len(h404.body)
