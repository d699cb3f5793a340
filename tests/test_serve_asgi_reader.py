"""Heads with every field and streamed bodies: pipelining, chunking, Expect, upgrades."""

from __future__ import annotations

import pytest

from zcopy.serve.asgi.reader import AsgiRequest, AsgiRequestReader


def asgi(req: object) -> AsgiRequest:
    assert isinstance(req, AsgiRequest)
    return req


def test_request_is_ready_at_its_head_and_body_streams_in() -> None:
    r = AsgiRequestReader()
    r.feed(b"PUT /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    req = asgi(r.ready[0])
    assert list(req.body) == [b"abc"] and req.buffered == 3 and not req.complete
    assert r.in_body
    r.feed(b"2\r\nde\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n")
    assert req.complete and b"".join(req.body) == b"abcde" and not r.in_body
    assert [q.target for q in r.ready] == [b"/f", b"/next"]


def test_byte_by_byte_body() -> None:
    r = AsgiRequestReader()
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nwxyz"
    for i in range(len(raw)):
        r.feed(raw[i : i + 1])
    req = asgi(r.ready[0])
    assert b"".join(req.body) == b"wxyz" and req.complete


def test_large_body_is_not_a_413() -> None:
    """The static reader refuses bodies past 1 MiB; an app gets them (it reads them itself)."""
    r = AsgiRequestReader()
    r.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 65536)
    req = asgi(r.ready[0])
    assert not req.error and req.buffered == 65536 and not r.broken


def test_expect_continue() -> None:
    r = AsgiRequestReader()
    r.feed(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n")
    assert asgi(r.ready[0]).expect_continue and r.continue_due
    r.feed(b"ok")
    assert not r.continue_due
    r10 = AsgiRequestReader()
    r10.feed(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert not asgi(r10.ready[0]).expect_continue  # ignored from HTTP/1.0 (RFC 9110 §10.1.1)


def test_websocket_upgrade_is_the_last_request() -> None:
    r = AsgiRequestReader()
    r.feed(b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81")
    req = asgi(r.ready[0])
    assert req.websocket and req.complete and not req.keep_alive and r.broken


def test_head_errors_keep_the_static_limits() -> None:
    r = AsgiRequestReader()
    r.feed(b"GET / HTTP/1.1\r\n\r\n")  # no Host
    assert r.ready[0].error == 400 and r.broken
    r = AsgiRequestReader()
    r.feed(b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 200 + b"\r\n")
    assert r.ready[-1].error == 431


def test_malformed_body_queues_an_error_behind_the_running_request() -> None:
    r = AsgiRequestReader()
    r.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    first = asgi(r.ready[0])
    assert not first.complete and r.broken and r.ready[-1].error == 400


def test_one_request_object_per_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """The base reader makes the ASGI request itself (``request_type``): no throwaway first."""
    from zcopy.serve import parser

    made: list[type] = []
    init = parser.Request.__init__

    def counting(self: parser.Request) -> None:
        made.append(type(self))
        init(self)

    monkeypatch.setattr(parser.Request, "__init__", counting)
    r = AsgiRequestReader()
    made.clear()  # the reader's own placeholder, made once per connection
    r.feed(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    assert made == [AsgiRequest, AsgiRequest]
    assert [type(q) for q in r.ready] == [AsgiRequest, AsgiRequest]
