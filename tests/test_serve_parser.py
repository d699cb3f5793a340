"""Request heads from bytes: pipelining, split feeds, and the 400/413/414/431 limits."""

from __future__ import annotations

import pytest

from zcopy.serve.parser import MAX_FIELDS, MAX_TARGET, RequestReader, valid_host


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
        (b"NOT HTTP\r\n\r\n", 400),  # not a request line
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
    r = feed_all(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n")
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


# --- protocol statuses (RFC 9110 / 9112) -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),  # the HTTP/2 preface
        (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 400),
        (b"GET /\r\n", 400),  # HTTP/0.9: answered at once, no header fields awaited
        (b"\r\n\r\nGET /index.html\r\n", 400),
        (b"GET /\r\nHost: h\r\n\r\n", 400),
        (b"FOO / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
        (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n", 413),  # no body read
    ],
)
def test_protocol_errors(raw: bytes, status: int) -> None:
    r = feed_all(raw)
    assert r.ready and r.ready[-1].error == status
    assert r.broken and not r.ready[-1].keep_alive


def test_leading_empty_lines_are_not_http09() -> None:
    r = feed_all(b"\r\n\r\nGET / HT", b"TP/1.1\r\nHost: h\r\n\r\n")
    assert [(q.target, q.error) for q in r.ready] == [(b"/", 0)]


def test_split_request_line_is_not_http09() -> None:
    r = RequestReader()
    for chunk in (b"GET /a", b" HTTP/1.", b"1\r", b"\nHost: h\r\n\r\n"):
        r.feed(chunk)
    assert [(q.target, q.error) for q in r.ready] == [(b"/a", 0)]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("example.com", True), ("example.com:8080", True), ("127.0.0.1:1", True),
        ("[::1]", True), ("[::1]:80", True), ("", True), ("xn--bcher-kva.example", True),
        ("a b", False), ("a/b", False), ("a?b", False), ("h:8x", False), ("u@h", False),
        ("[::1", False), ("a\\b", False),
    ],
)
def test_valid_host(value: str, ok: bool) -> None:
    assert valid_host(value) is ok


def test_repeated_range_is_ignored() -> None:
    (q,) = feed_all(
        b"GET / HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n"
    ).ready
    assert q.error == 0 and "range" not in q.headers


def test_body_state_and_expect_continue() -> None:
    r = feed_all(b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    assert (r.in_head, r.in_body, r.continue_due, len(r.ready)) == (False, True, True, 0)
    r.feed(b"ab")
    assert r.in_body and not r.continue_due
    r.feed(b"cd")
    assert not r.in_body and len(r.ready) == 1


def test_expect_ignored_for_http10_and_bodiless_requests() -> None:
    r = feed_all(b"GET / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    assert r.in_body and not r.continue_due
    r = feed_all(b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n")
    assert not r.in_body and not r.continue_due and len(r.ready) == 1


def test_body_streamed_to_a_sink() -> None:
    heads: list[bytes] = []
    chunks: list[bytes] = []
    r = RequestReader(
        on_head=lambda q: heads.append(q.target), on_body=lambda q, b: chunks.append(b)
    )
    r.feed(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n")
    assert heads == [b"/up"] and r.in_body
    for _ in range(20):
        r.feed(b"x" * 100_000)
    assert sum(map(len, chunks)) == 2_000_000 and r.ready[0].error == 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"FOO / HTTP/1.1\r\nHost: h\r\n\r\n", 501),
        (b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nBREW /pot HTTP/1.1\r\nHost: h\r\n\r\n", 501),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGARBAGE\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello
    ],
)
def test_unknown_method_or_garbage(raw: bytes, status: int) -> None:
    assert feed_all(raw).ready[-1].error == status
