"""Request heads from bytes: pipelining, split feeds, and the 400/413/414/431 limits."""

from __future__ import annotations

import pytest

from zcopy.serve.parser import MAX_FIELDS, MAX_TARGET, RequestReader


def feed_all(*chunks: bytes) -> RequestReader:
    r = RequestReader()
    for c in chunks:
        r.feed(c)
    return r


def test_pipelined_requests_in_one_feed() -> None:
    r = feed_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\nHost: h\r\n\r\n")
    assert [(q.method, q.target) for q in r.ready] == [("GET", b"/a"), ("HEAD", b"/b")]
    assert not r.in_head


def test_byte_by_byte() -> None:
    raw = b"GET /split HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n"
    r = RequestReader()
    for i in range(len(raw)):
        r.feed(raw[i : i + 1])
        if i < len(raw) - 1:
            assert not r.ready and r.in_head
    (q,) = r.ready
    assert q.target == b"/split" and q.headers["range"] == "bytes=0-1"


def test_only_wanted_headers_kept_and_repeats_joined() -> None:
    r = feed_all(
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Junk: 1\r\nIf-None-Match: \"a\"\r\n"
        b"If-None-Match: \"b\"\r\n\r\n"
    )
    (q,) = r.ready
    assert q.headers == {"host": "h", "if-none-match": '"a", "b"'}


@pytest.mark.parametrize(
    ("raw", "keep_alive", "version"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True, "1.1"),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False, "1.1"),
        (b"GET / HTTP/1.0\r\n\r\n", False, "1.0"),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True, "1.0"),
    ],
)
def test_keep_alive(raw: bytes, keep_alive: bool, version: str) -> None:
    (q,) = feed_all(raw).ready
    assert (q.keep_alive, q.version, q.error) == (keep_alive, version, 0)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /" + b"a" * (MAX_TARGET + 1) + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: v\r\n" * (MAX_FIELDS + 1) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 200_000, 431),  # never completes
        (b"NOT HTTP\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  # two Hosts
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 1_100_000, 413),
    ],
)
def test_limits(raw: bytes, status: int) -> None:
    r = RequestReader()
    for i in range(0, len(raw), 65536):
        r.feed(raw[i : i + 65536])
    assert r.ready and r.ready[-1].error == status
    assert r.broken and not r.ready[-1].keep_alive


def test_requests_before_an_error_are_kept() -> None:
    r = feed_all(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\nBROKEN\r\n\r\n")
    assert [q.error for q in r.ready] == [0, 400]
    assert r.ready[0].target == b"/ok"
    r.feed(b"GET /more HTTP/1.1\r\nHost: h\r\n\r\n")  # nothing after an error is parsed
    assert len(r.ready) == 2


def test_body_on_get_is_discarded() -> None:
    r = feed_all(b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n"
                 b"Host: h\r\n\r\n")
    assert [q.target for q in r.ready] == [b"/a", b"/b"]


def test_request_line_for_the_log() -> None:
    (q,) = feed_all(b"GET /x?y HTTP/1.1\r\nHost: h\r\n\r\n").ready
    assert q.request_line == "GET /x?y HTTP/1.1"
