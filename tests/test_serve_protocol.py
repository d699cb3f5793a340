"""``zcopy serve`` protocol statuses (RFC 9110 / 9112) against a live server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from serve_util import ServeProc, read_response, request_bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProc]:
    root = tmp_path_factory.mktemp("proto")
    (root / "a.txt").write_bytes(b"a\n")
    # A long header timeout: a prompt answer cannot be the timeout's.
    with ServeProc(root, "--header-timeout", "30") as proc:
        yield proc


def exchange(proc: ServeProc, data: bytes, timeout: float = 5) -> tuple[int, dict[str, str], bool]:
    """Send ``data``; return the status, headers, and whether the server then closed."""
    with proc.connect(timeout=timeout) as s, s.makefile("rb") as f:
        s.sendall(data)
        r = read_response(f)
        try:
            closed = f.read(1) == b""
        except TimeoutError:
            closed = False
    return r.status, r.headers, closed


@pytest.mark.parametrize(
    ("data", "status", "closes"),
    [
        (b"GET /a.txt HTTP/2.0\r\nHost: t\r\n\r\n", 505, True),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, True),
        (b"GET /a.txt\r\n", 400, True),  # HTTP/0.9: at once, without waiting for more
        (b"FOO /a.txt HTTP/1.1\r\nHost: t\r\n\r\n", 501, True),
        (b"GET /a.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, True),
        (b"GET /a.txt HTTP/1.1\r\nHost: bad host\r\n\r\n", 400, True),
        (b"GET /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, True),
    ],
    ids=["http2", "h2-preface", "http09", "unknown-method", "http10-te", "bad-host", "two-hosts"],
)
def test_protocol_errors_answer_and_close(
    server: ServeProc, data: bytes, status: int, closes: bool
) -> None:
    start = time.monotonic()
    got, headers, closed = exchange(server, data, timeout=1 if closes else 5)
    assert (got, closed) == (status, closes)
    assert headers["connection"] == "close"
    assert time.monotonic() - start < 5  # prompt, not at the 30 s header timeout


def test_known_method_not_allowed_is_405_with_allow(server: ServeProc) -> None:
    with server.connect() as s, s.makefile("rb") as f:
        s.sendall(request_bytes("/a.txt", "Content-Length: 3", method="POST") + b"abc")
        r = read_response(f)
        assert (r.status, r.headers["allow"]) == (405, "GET, HEAD")
        s.sendall(request_bytes("/a.txt"))  # the connection stays usable
        assert read_response(f).body == b"a\n"


def test_expect_100_continue(server: ServeProc) -> None:
    """The client waits for 100 Continue before the body; without it, no answer ever came."""
    with server.connect(timeout=5) as s, s.makefile("rb") as f:
        s.sendall(request_bytes("/a.txt", "Expect: 100-continue", "Content-Length: 5"))
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        s.sendall(b"hello")
        r = read_response(f)
        assert (r.status, r.body) == (200, b"a\n")


def test_expect_with_a_body_too_large_gets_413_without_100(server: ServeProc) -> None:
    data = request_bytes("/a.txt", "Expect: 100-continue", "Content-Length: 999999999")
    status, _, closed = exchange(server, data)
    assert (status, closed) == (413, True)


def test_leading_empty_lines_are_tolerated(server: ServeProc) -> None:
    status, _, _ = exchange(server, b"\r\n\r\n" + request_bytes("/a.txt"), timeout=1)
    assert status == 200


def test_http10_keep_alive_is_honoured(server: ServeProc) -> None:
    with server.connect() as s, s.makefile("rb") as f:
        for _ in range(2):
            s.sendall(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = read_response(f)
            assert (r.status, r.headers["connection"]) == (200, "keep-alive")
        s.shutdown(socket.SHUT_WR)
        assert f.read() == b""
