"""``zcopy serve`` end to end: a real server process on 127.0.0.1, checked from the client side."""

from __future__ import annotations

import gzip
import itertools
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_strace
from serve_util import (
    Response,
    ServeProc,
    get,
    raw_request,
    read_response,
    request_bytes,
    wait_for,
)

from zcopy.serve.conn import Conn
from zcopy.serve.parser import Request
from zcopy.serve.server import SMALL_BODY
from zcopy.tools._proc import alive, children

BIG = 48 * 1024 * 1024


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "small.bin").write_bytes(os.urandom(4096))
    (root / "data.bin").write_bytes(os.urandom(100_000))
    (root / "empty.txt").write_bytes(b"")
    (root / "hello.txt").write_bytes(b"hello, world\n")
    (root / "app.js").write_bytes(b"console.log('plain');\n" * 50)
    (root / "app.js.gz").write_bytes(gzip.compress((root / "app.js").read_bytes()))
    (root / "app.js.br").write_bytes(b"pretend-brotli-bytes")
    (root / "dir").mkdir()
    (root / "dir" / "<b>&'\".txt").write_bytes(b"x")
    (root / "dir" / "sp ace.txt").write_bytes(b"y")
    (root / "dir" / ".dotfile").write_bytes(b"z")
    (root / "withindex").mkdir()
    (root / "withindex" / "index.html").write_bytes(b"<p>index</p>\n")
    return root


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[ServeProc]:
    with ServeProc(site, "--stats") as proc:
        yield proc


def data(site: Path, name: str) -> bytes:
    return (site / name).read_bytes()


# --- GET / HEAD / headers ----------------------------------------------------------------


def test_get_full(server: ServeProc, site: Path) -> None:
    r = get(server.port, "/data.bin")
    assert r.status == 200
    assert r.body == data(site, "data.bin")
    h = r.headers
    assert h["content-length"] == "100000"
    assert h["accept-ranges"] == "bytes"
    assert h["content-type"] == "application/octet-stream"
    assert h["server"].startswith("zcopy/")
    assert h["etag"].startswith('"') and h["etag"].endswith('"')
    assert h["last-modified"].endswith(" GMT") and h["date"].endswith(" GMT")
    assert "connection" not in h


def test_text_has_charset(server: ServeProc) -> None:
    assert get(server.port, "/hello.txt").headers["content-type"] == "text/plain; charset=utf-8"


def test_empty_file(server: ServeProc) -> None:
    r = get(server.port, "/empty.txt")
    assert (r.status, r.body, r.headers["content-length"]) == (200, b"", "0")


def test_head_then_get_on_one_connection(server: ServeProc, site: Path) -> None:
    """HEAD sends no body: the GET after it on the same connection parses cleanly."""
    with server.connect() as s, s.makefile("rb") as f:
        s.sendall(b"HEAD /data.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        head = read_response(f, head=True)
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(f)
    assert head.status == 200 and head.headers["content-length"] == "100000"
    assert r.body == b"hello, world\n"


def test_keep_alive_and_pipelining(server: ServeProc, site: Path) -> None:
    full = data(site, "data.bin")
    reqs = (
        b"GET /data.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n"
        b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0,50000-50000\r\n\r\n"
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with server.connect() as s, s.makefile("rb") as f:
        s.sendall(reqs)
        rs = [read_response(f, head=(i == 1)) for i in range(6)]
        assert f.read() == b""  # closed after the last, nothing extra
    assert [r.status for r in rs] == [200, 200, 206, 404, 206, 200]
    assert rs[0].body == full
    assert rs[2].body == full[10:20]
    assert rs[4].headers["content-type"].startswith("multipart/byteranges")
    assert rs[5].body == b"hello, world\n" and rs[5].headers["connection"] == "close"


def test_http10_closes(server: ServeProc) -> None:
    with server.connect() as s:
        s.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
        with s.makefile("rb") as f:
            r = read_response(f)
            assert f.read() == b""
    assert r.body == b"hello, world\n"


# --- ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [("0-99", 0, 99), ("99990-", 99990, 99999), ("-10", 99990, 99999), ("500-500", 500, 500),
     ("99000-200000", 99000, 99999)],
)
def test_single_range(server: ServeProc, site: Path, spec: str, first: int, last: int) -> None:
    r = get(server.port, "/data.bin", {"Range": f"bytes={spec}"})
    assert r.status == 206
    assert r.headers["content-range"] == f"bytes {first}-{last}/100000"
    assert r.body == data(site, "data.bin")[first : last + 1]


def parse_multipart(r: Response) -> list[tuple[dict[str, str], bytes]]:
    m = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", r.headers["content-type"])
    assert m, r.headers["content-type"]
    delim = b"\r\n--" + m[1].encode()
    body = r.body
    assert len(body) == int(r.headers["content-length"])
    assert body.endswith(delim + b"--\r\n")
    parts = []
    pieces = body[: -len(delim + b"--\r\n")].split(delim)
    assert pieces[0] == b""  # nothing before the first delimiter
    for piece in pieces[1:]:
        head, _, payload = piece.partition(b"\r\n\r\n")
        hdrs = {}
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.decode().partition(":")
            hdrs[k.strip().lower()] = v.strip()
        parts.append((hdrs, payload))
    return parts


def test_multipart_byte_for_byte(server: ServeProc, site: Path) -> None:
    full = data(site, "data.bin")
    r = get(server.port, "/data.bin", {"Range": "bytes=-100, 0-99, 40000-40999"})
    assert r.status == 206
    parts = parse_multipart(r)
    expected = [(0, 99), (40000, 40999), (99900, 99999)]  # sorted, as RFC 9110 allows
    assert len(parts) == 3
    for (hdrs, payload), (a, b) in zip(parts, expected, strict=True):
        assert hdrs["content-range"] == f"bytes {a}-{b}/100000"
        assert hdrs["content-type"] == "application/octet-stream"
        assert payload == full[a : b + 1]


def test_overlapping_ranges_coalesced(server: ServeProc, site: Path) -> None:
    r = get(server.port, "/data.bin", {"Range": "bytes=0-999,500-1499,1000-1999"})
    assert r.status == 206 and r.headers["content-range"] == "bytes 0-1999/100000"
    assert r.body == data(site, "data.bin")[:2000]


def test_range_abuse_gets_whole_file_once(server: ServeProc, site: Path) -> None:
    many = ",".join(f"{i}-{i}" for i in range(0, 100 * 33, 100))  # 33 tiny ranges > cap
    r = get(server.port, "/data.bin", {"Range": f"bytes={many}"})
    assert r.status == 200 and len(r.body) == 100_000
    # 31 small ranges on a 4 KiB file: with part headers, more bytes than the file itself.
    tiny = ",".join(f"{i}-{i + 29}" for i in range(0, 4096, 136))
    r = get(server.port, "/small.bin", {"Range": f"bytes={tiny}"})
    assert r.status == 200 and r.body == data(site, "small.bin")


def test_416(server: ServeProc) -> None:
    r = get(server.port, "/data.bin", {"Range": "bytes=100000-"})
    assert r.status == 416
    assert r.headers["content-range"] == "bytes */100000"


def test_invalid_range_ignored(server: ServeProc) -> None:
    r = get(server.port, "/data.bin", {"Range": "bytes=9-1"})
    assert r.status == 200 and len(r.body) == 100_000


def test_head_ignores_range(server: ServeProc) -> None:
    r = get(server.port, "/data.bin", {"Range": "bytes=0-9"}, method="HEAD")
    assert r.status == 200 and r.headers["content-length"] == "100000"


def test_if_range_both_ways(server: ServeProc, site: Path) -> None:
    full = data(site, "data.bin")
    base = get(server.port, "/data.bin", method="HEAD").headers
    etag, lm = base["etag"], base["last-modified"]
    hit = get(server.port, "/data.bin", {"Range": "bytes=5-9", "If-Range": etag})
    assert (hit.status, hit.body) == (206, full[5:10])
    miss = get(server.port, "/data.bin", {"Range": "bytes=5-9", "If-Range": '"stale"'})
    assert (miss.status, miss.body) == (200, full)
    weak = get(server.port, "/data.bin", {"Range": "bytes=5-9", "If-Range": "W/" + etag})
    assert weak.status == 200
    date_hit = get(server.port, "/data.bin", {"Range": "bytes=5-9", "If-Range": lm})
    assert (date_hit.status, date_hit.body) == (206, full[5:10])
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    date_miss = get(server.port, "/data.bin", {"Range": "bytes=5-9", "If-Range": old})
    assert (date_miss.status, len(date_miss.body)) == (200, 100_000)


# --- conditionals ------------------------------------------------------------------------


def test_304_and_412(server: ServeProc) -> None:
    base = get(server.port, "/hello.txt", method="HEAD").headers
    etag, lm = base["etag"], base["last-modified"]
    r = get(server.port, "/hello.txt", {"If-None-Match": etag})
    assert r.status == 304 and r.body == b"" and r.headers["etag"] == etag
    assert "content-length" not in r.headers
    assert get(server.port, "/hello.txt", {"If-Modified-Since": lm}).status == 304
    assert get(server.port, "/hello.txt", {"If-None-Match": '"other"'}).status == 200
    assert get(server.port, "/hello.txt", {"If-Match": '"other"'}).status == 412
    assert get(server.port, "/hello.txt", {"If-Match": etag}).status == 200
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert get(server.port, "/hello.txt", {"If-Unmodified-Since": old}).status == 412
    # If-None-Match takes precedence over If-Modified-Since.
    r = get(server.port, "/hello.txt", {"If-None-Match": '"other"', "If-Modified-Since": lm})
    assert r.status == 200


# --- errors ------------------------------------------------------------------------------


def test_405_with_allow(server: ServeProc) -> None:
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, _ = raw_request(
            server.port, f"{method} /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        assert status == 405 and headers["allow"] == "GET, HEAD"


def test_414_431_400(server: ServeProc) -> None:
    status, headers, _ = raw_request(server.port, f"GET /{'a' * 10000} HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and headers["connection"] == "close"
    status, _, _ = raw_request(server.port, f"GET / HTTP/1.1\r\nHost: x\r\nX: {'b' * 9000}\r\n\r\n")
    assert status == 431
    many = "".join(f"X-{i}: v\r\n" for i in range(200))
    status, _, _ = raw_request(server.port, f"GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")
    assert status == 431
    huge = "X: " + "c" * 200_000
    status, _, _ = raw_request(server.port, f"GET / HTTP/1.1\r\nHost: x\r\n{huge}\r\n\r\n")
    assert status == 431
    for bad in ("GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nno colon\r\n\r\n", "GET / HTTP/1.1\r\n\r\n",
                "GET / HTTP/9.9\r\nHost: x\r\n\r\n"):
        status, headers, _ = raw_request(server.port, bad)
        assert status == 400, bad
        assert headers["connection"] == "close"


def test_404_keeps_connection(server: ServeProc) -> None:
    with server.connect() as s, s.makefile("rb") as f:
        s.sendall(
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert read_response(f).status == 404
        assert read_response(f).body == b"hello, world\n"


# --- directories -------------------------------------------------------------------------


def test_listing_escapes_names(server: ServeProc) -> None:
    r = get(server.port, "/dir/")
    assert r.status == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    html = r.body.decode()
    assert "&lt;b&gt;&amp;&#x27;&quot;.txt" in html
    assert "<b>" not in html
    assert 'href="%3Cb%3E%26%27%22.txt"' in html
    assert 'href="sp%20ace.txt"' in html
    assert ".dotfile" not in html


def test_directory_redirect(server: ServeProc) -> None:
    r = get(server.port, "/dir?x=1")
    assert r.status == 301 and r.headers["location"] == "/dir/?x=1"


def test_index_html(server: ServeProc) -> None:
    r = get(server.port, "/withindex/")
    assert r.status == 200 and r.body == b"<p>index</p>\n"
    assert r.headers["content-type"] == "text/html; charset=utf-8"


def test_file_with_trailing_slash_is_404(server: ServeProc) -> None:
    assert get(server.port, "/hello.txt/").status == 404


def test_no_listing(site: Path) -> None:
    with ServeProc(site, "--no-listing") as proc:
        assert get(proc.port, "/dir/").status == 403
        assert get(proc.port, "/withindex/").status == 200


# --- precompressed sidecars --------------------------------------------------------------


def test_sidecars(server: ServeProc, site: Path) -> None:
    plain = get(server.port, "/app.js")
    assert plain.body == data(site, "app.js")
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"
    gz = get(server.port, "/app.js", {"Accept-Encoding": "gzip"})
    assert gz.headers["content-encoding"] == "gzip" and gz.headers["vary"] == "Accept-Encoding"
    assert gz.body == data(site, "app.js.gz")
    assert gzip.decompress(gz.body) == plain.body
    assert gz.headers["content-type"] == "text/javascript; charset=utf-8"
    assert gz.headers["etag"] != plain.headers["etag"]
    br = get(server.port, "/app.js", {"Accept-Encoding": "gzip, deflate, br"})
    assert br.headers["content-encoding"] == "br" and br.body == b"pretend-brotli-bytes"
    refused = get(server.port, "/app.js", {"Accept-Encoding": "br;q=0, gzip"})
    assert refused.headers["content-encoding"] == "gzip"
    # A sidecar asked for by name is just a file: no Content-Encoding.
    direct = get(server.port, "/app.js.gz")
    assert "content-encoding" not in direct.headers
    assert direct.headers["content-type"] == "application/gzip"
    ranged = get(server.port, "/app.js", {"Accept-Encoding": "gzip", "Range": "bytes=0-9"})
    assert ranged.status == 206 and ranged.body == data(site, "app.js.gz")[:10]


# --- access log and stats ----------------------------------------------------------------


def test_access_log_counts_fast_path_bytes(server: ServeProc) -> None:
    get(server.port, "/data.bin", {"Range": "bytes=0-1233", "User-Agent": "t\"ua", "Referer": "r"})
    pattern = re.compile(
        r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
        r'"GET /data\.bin HTTP/1\.1" 206 1234 "r" "t\\"ua"$',
        re.M,
    )
    wait_for(lambda: pattern.search(server.access_log()), what="the access log line")


def test_stats_endpoint(server: ServeProc) -> None:
    import json

    get(server.port, "/data.bin")
    r = get(server.port, "/_zcopy/stats")
    stats = json.loads(r.body)
    assert stats["routes"]["sendfile"]["bytes"] >= 100_000
    assert "userspace" not in stats["routes"]
    assert stats["pid"] == server.pid
    os.kill(server.pid, signal.SIGUSR1)
    wait_for(lambda: re.search(r"stats \(pid \d+\): sendfile \d+ bytes", server.stderr()),
             what="per-route stats on SIGUSR1")


# --- the inline path: plain keep-alive requests answered from the reader callback ---------


def in_process(
    root: Path, client: Callable[[socket.socket], object], **config: Any
) -> tuple[list[str], int]:
    """Run a ``Server`` in this process and ``client`` (in a thread) on one connection to it.

    Returns the targets the task answered (``_respond``) and how many responses the
    inline path began and left to the task (``_finish``).
    """
    import asyncio

    from zcopy.daemon import listen
    from zcopy.serve.server import Config, Server, _Rest

    answered: list[str] = []
    finished = 0

    async def main() -> None:
        server = Server(Config(str(root.resolve()), **config), listen("127.0.0.1", 0))
        respond, finish = server._respond, server._finish

        async def counted(conn: Conn, req: Request) -> bool:
            answered.append(req.target.decode())
            return await respond(conn, req)

        async def counted_finish(conn: Conn, rest: _Rest) -> None:
            nonlocal finished
            finished += 1
            await finish(conn, rest)

        server._respond = counted  # type: ignore[method-assign]
        server._finish = counted_finish  # type: ignore[method-assign]
        serving = asyncio.get_running_loop().create_task(server.serve())
        await asyncio.sleep(0.05)

        def run_client() -> None:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before the handshake
            s.settimeout(10)
            with s:
                s.connect(server.listener.getsockname())
                client(s)

        try:
            await asyncio.wait_for(asyncio.to_thread(run_client), 60)
        finally:
            server.stop()
            await asyncio.wait_for(serving, 10)

    asyncio.run(main())
    return answered, finished


def test_inline_path_answers_repeat_requests_and_declines_the_rest(site: Path) -> None:
    """After the first request for a target, a plain GET or HEAD and a revalidation that
    ends in 304 never wake the task; a Range, a precondition that fails or passes to a 200,
    a directory, a 404 still go through ``_respond``, in order."""
    small = data(site, "small.bin")
    asks = [request_bytes("/small.bin")] * 5 + [
        request_bytes("/small.bin", method="HEAD"),
        request_bytes("/small.bin", "Range: bytes=0-9"),
        request_bytes("/small.bin", "If-None-Match: *"),  # a revalidation: 304 inline
        request_bytes("/small.bin", 'If-None-Match: "other"'),  # changed: 200 by the task
        request_bytes("/dir/"),
        request_bytes("/missing"),
        request_bytes("/small.bin"),
    ]
    got = []

    def client(s: socket.socket) -> None:
        with s.makefile("rb") as f:
            for i, ask in enumerate(asks):
                time.sleep(0.05)  # the task is back waiting for the next request
                s.sendall(ask)
                got.append(read_response(f, head=i == 5))

    answered, _ = in_process(site, client, stats=True)
    assert [r.status for r in got] == [200] * 6 + [206, 304, 200, 200, 404, 200]
    assert all(r.body == small for r in got[:5]) and got[8].body == got[11].body == small
    assert got[6].body == small[:10] and got[7].body == b""
    same = {k: v for k, v in got[0].headers.items() if k != "date"}
    for r in (got[5], got[11]):  # the inline HEAD and GET: the task's 200 head, to the byte
        assert {k: v for k, v in r.headers.items() if k != "date"} == same
    assert got[7].headers["etag"] == same["etag"] and "content-length" not in got[7].headers
    assert answered == ["/small.bin", "/small.bin", "/small.bin", "/dir/", "/missing"]


def test_inline_path_hands_a_full_socket_to_the_task(tmp_path: Path) -> None:
    """A client that does not read: inline answers fill the socket, the last one only in
    part, and the task sends its rest; every response arrives byte-exact, in order."""
    mid = os.urandom(200 * 1024)  # under CORK_MIN: answered inline
    (tmp_path / "mid.bin").write_bytes(mid)
    bodies = []

    def client(s: socket.socket) -> None:
        with s.makefile("rb") as f:
            s.sendall(request_bytes("/mid.bin"))  # the first: the task's (a new target)
            bodies.append(read_response(f).body)
            for _ in range(29):  # 6 MB unread: more than both socket buffers hold
                s.sendall(request_bytes("/mid.bin"))
                time.sleep(0.01)  # each arrives while the task waits: answered inline
            bodies.extend(read_response(f).body for _ in range(29))

    answered, finished = in_process(tmp_path, client)
    assert len(bodies) == 30 and all(b == mid for b in bodies)
    assert finished >= 1 and answered[0] == "/mid.bin"


def test_uvloop_serves_static_files_inline_and_not(site: Path) -> None:
    """``--loop uvloop`` (a test dependency): plain requests inline, a Range by the task."""
    with ServeProc(site, "--loop", "uvloop") as proc, proc.connect() as s, s.makefile("rb") as f:
        for extra in ((), (), ("Range: bytes=1-2",), ()):
            time.sleep(0.02)
            s.sendall(request_bytes("/data.bin", *extra))
            r = read_response(f)
            want = data(site, "data.bin")
            assert (r.status, r.body) == ((206, want[1:3]) if extra else (200, want))


def test_inline_rest_of_a_stalled_client_is_cut_off_and_leaks_nothing(tmp_path: Path) -> None:
    mid = os.urandom(200 * 1024)
    (tmp_path / "mid.bin").write_bytes(mid)
    (tmp_path / "a.txt").write_bytes(b"a\n")
    with ServeProc(tmp_path, "--send-timeout", "1") as proc:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.connect(("127.0.0.1", proc.port))
        with s, s.makefile("rb") as f:
            s.sendall(request_bytes("/mid.bin"))
            assert read_response(f).body == mid
            for _ in range(29):  # never read: the socket fills, the task waits, stalls
                s.sendall(request_bytes("/mid.bin"))
                time.sleep(0.01)
            wait_for(lambda: "send stalled" in proc.stderr(), what="the stalled client cut off")
        line = '"GET /mid.bin HTTP/1.1" 200 204800 '
        wait_for(lambda: line in proc.access_log(), what="the whole bodies logged")
        wait_for(lambda: _files_open(proc, "mid.bin") == 0, what="mid.bin closed")
        assert get(proc.port, "/a.txt").body == b"a\n"


# --- hostile and unlucky clients ---------------------------------------------------------


def _sockets(proc: ServeProc) -> int:
    return sum(1 for t in proc.fds() if t.startswith("socket:"))


def _files_open(proc: ServeProc, name: str) -> int:
    return sum(1 for t in proc.fds() if t.endswith(name))


@pytest.fixture
def big_site(tmp_path: Path) -> Path:
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))
    (tmp_path / "a.txt").write_bytes(b"a\n")
    return tmp_path


def test_slow_and_vanishing_clients_leak_nothing(big_site: Path) -> None:
    with ServeProc(
        big_site, "--send-timeout", "1", "--header-timeout", "1", "--keepalive-timeout", "1"
    ) as proc:
        baseline = _sockets(proc)  # the listener and the event loop's self-pipe
        clients = []
        for _ in range(4):  # stall: ask for a big file and never read
            s = proc.connect()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(s)
        for _ in range(4):  # vanish: ask, read a little, reset the connection
            s = proc.connect()
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(1000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        half = proc.connect()  # a slowloris head, never finished
        half.sendall(b"GET /a.txt HTTP/1.1\r\nHo")
        clients.append(half)
        idle = proc.connect()  # one request, then silence: the keep-alive timeout closes it
        idle.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        with idle.makefile("rb") as f:
            assert read_response(f).body == b"a\n"
            assert f.read() == b""  # EOF from the server, well before the 10 s socket timeout
        clients.append(idle)
        wait_for(lambda: _sockets(proc) == baseline, what="server to drop every client socket")
        wait_for(lambda: _files_open(proc, "big.bin") == 0, what="big.bin fds to close")
        assert "send stalled" in proc.stderr()
        assert "header timeout" in proc.stderr()
        assert get(proc.port, "/a.txt").body == b"a\n"  # still serving
        for s in clients:
            s.close()


def test_connection_cap(big_site: Path) -> None:
    with ServeProc(big_site, "--max-connections", "2") as proc:
        held = [proc.connect(), proc.connect()]
        for s in held:  # make sure both are accepted and counted
            s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            with s.makefile("rb") as f:
                assert read_response(f).status == 200
        status, headers, _ = raw_request(proc.port, "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503 and headers["connection"] == "close"
        held[0].close()
        wait_for(
            lambda: raw_request(proc.port, "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200,
            what="a free slot",
        )
        held[1].close()


def test_file_shrinking_mid_send(big_site: Path) -> None:
    original = (big_site / "big.bin").read_bytes()
    keep = 16 * 1024 * 1024
    with ServeProc(big_site) as proc, proc.connect(timeout=20) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        hdrs = {}
        while (line := f.readline()) != b"\r\n":
            k, _, v = line.decode().partition(":")
            hdrs[k.lower()] = v.strip()
        assert int(hdrs["content-length"]) == BIG
        first = f.read(1 << 20)
        os.truncate(big_site / "big.bin", keep)
        rest = f.read()  # to EOF: the server must close, not pad or hang
        f.close()
        body = first + rest
        assert len(body) == keep
        assert body == original[:keep]
        wait_for(lambda: "shrank" in proc.stderr(), what="the shrink to be logged")
        wait_for(lambda: f'"GET /big.bin HTTP/1.1" 200 {keep} ' in proc.access_log(),
                 what="the short body in the access log")


def test_file_growing_mid_send_never_leaks_into_the_next_response(big_site: Path) -> None:
    original = (big_site / "big.bin").read_bytes()
    with ServeProc(big_site) as proc, proc.connect(timeout=20) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        while f.readline() != b"\r\n":
            pass
        first = f.read(1 << 20)
        with open(big_site / "big.bin", "ab") as grow:
            grow.write(b"X" * (1 << 20))
        rest = f.read(BIG - len(first))
        assert first + rest == original  # exactly Content-Length bytes, the old ones
        s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(f)  # the next response starts right after: no stray X bytes
        assert (r.status, r.body) == (200, b"a\n")
        f.close()


def test_graceful_shutdown(big_site: Path) -> None:
    original = (big_site / "big.bin").read_bytes()
    proc = ServeProc(big_site, "--linger-timeout", "1")  # the idle client closes late
    try:
        idle = proc.connect()
        idle.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        fi = idle.makefile("rb")
        assert read_response(fi).status == 200
        busy = proc.connect(timeout=30)
        busy.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        fb = busy.makefile("rb")
        assert fb.readline().startswith(b"HTTP/1.1 200")
        os.kill(proc.pid, signal.SIGTERM)
        assert fi.read() == b""  # the idle keep-alive connection is closed at once
        wait_for(lambda: _refused(proc.port), what="the listener to close")
        while fb.readline() != b"\r\n":
            pass
        body = fb.read()  # the transfer in flight completes, then the connection closes
        assert body == original
        proc.proc.wait(20)
        assert proc.proc.returncode == 0
        for x in (fi, fb, idle, busy):
            x.close()
    finally:
        proc.stop()


def test_shutdown_cuts_off_a_stuck_transfer(big_site: Path) -> None:
    with ServeProc(big_site, "--shutdown-timeout", "1") as proc, proc.connect() as stuck:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert stuck.recv(100).startswith(b"HTTP/1.1 200")  # the transfer is under way
        os.kill(proc.pid, signal.SIGTERM)
        proc.proc.wait(20)  # it does not wait for a client that never reads
        assert proc.proc.returncode == 0
        assert "cut off" in proc.stderr()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_workers(big_site: Path) -> None:
    import json

    with ServeProc(big_site, "--workers", "2", "--stats") as proc:
        wait_for(lambda: len(children(proc.pid)) == 2, what="two workers")
        for _ in range(20):
            assert get(proc.port, "/a.txt").body == b"a\n"
        kids = children(proc.pid)
        # SO_REUSEPORT spreads connections over both (all 40 on one: odds about 1e-12).
        served_by = {json.loads(get(proc.port, "/_zcopy/stats").body)["pid"] for _ in range(40)}
        assert served_by == set(kids)
        assert proc.stop() == 0
        for kid in kids:
            assert not alive(kid)
    time.sleep(0)


# --- the outside witness -----------------------------------------------------------------


def test_strace_sees_the_inline_path_answer_within_the_readiness_callback(
    tmp_path: Path,
) -> None:
    """From outside: a plain keep-alive GET of a known small file costs one epoll_wait, one
    recvfrom, the head's sendto with MSG_MORE and one sendfile, in that order and nothing
    else on the connection: answered in the callback the readiness woke (the task path adds
    a second loop turn and an EAGAIN recvfrom), with the body never read by the server.
    (``--small-body 0``: by default a small body goes with its head: the next test.)"""
    from zcopy.tools import strace

    require_strace()
    body = os.urandom(4096)
    (tmp_path / "small.bin").write_bytes(body)
    out = tmp_path / "strace.out"
    with ServeProc(
        tmp_path, "--small-body", "0",
        prefix=strace.command(str(out), (*strace.DATA_SYSCALLS, "epoll_wait")),
    ) as proc, proc.connect() as s, s.makefile("rb") as f:
        for _ in range(8):
            s.sendall(request_bytes("/small.bin"))
            r = read_response(f)
            assert (r.status, r.body) == (200, body)
            time.sleep(0.02)  # one request at a time: each wakes the loop on its own
        assert proc.stop() == 0
    calls = strace.parse_lines(out.read_text().splitlines())
    conn = [c for c in calls if any("TCP:" in w and "->" in w for _, w in c.fds)]
    assert not [c for c in calls if c.name in ("read", "pread64") and
                any(w.endswith("small.bin") for _, w in c.fds)], "the body went through user space"
    ends = [i for i, c in enumerate(calls) if c.name == "sendfile" and c.ok]
    assert len(ends) == 8 and all(calls[i].ret == 4096 for i in ends)
    # The first request is the task's (its target was new): after answering, the task's
    # recvfrom meets EAGAIN before it waits. Requests 2-8 are answered inline.
    inline = ["epoll_wait", "recvfrom", "sendto", "sendfile"]
    for k, (prev, end) in enumerate(itertools.pairwise(ends)):
        between = [c.name for c in calls[prev + 1 : end + 1]
                   if c.name == "epoll_wait" or c in conn]
        assert between == (["recvfrom", *inline] if k == 0 else inline), (k, between)
        head = calls[end - 1] if calls[end - 1].name == "sendto" else None
        assert head is not None and "MSG_MORE" in head.args
    assert conn


@pytest.mark.parametrize("size", [4096, SMALL_BODY])
def test_strace_sees_a_small_file_go_with_its_head_in_one_sendmsg(
    tmp_path: Path, size: int
) -> None:
    """From outside: a kept-alive GET of a small file is one epoll_wait, one recvfrom, one
    pread of the file (size + 1 bytes asked, size returned) and one sendmsg carrying head and
    body together (no MSG_MORE, no sendfile). A file one byte over ``--small-body`` still
    goes by sendfile, never read."""
    from zcopy.tools import strace

    require_strace()
    body = os.urandom(size)
    (tmp_path / "small.bin").write_bytes(body)
    (tmp_path / "over.bin").write_bytes(os.urandom(size + 1))
    out = tmp_path / "strace.out"
    with ServeProc(
        tmp_path, "--small-body", str(size),
        prefix=strace.command(str(out), (*strace.DATA_SYSCALLS, "epoll_wait")),
    ) as proc, proc.connect() as s, s.makefile("rb") as f:
        for name, want in (("small.bin", body), ("over.bin", None)):
            for _ in range(6):
                s.sendall(request_bytes(f"/{name}"))
                r = read_response(f)
                assert r.status == 200 and (want is None or r.body == want)
                time.sleep(0.02)  # one request at a time: each wakes the loop on its own
        assert proc.stop() == 0
    calls = strace.parse_lines(out.read_text().splitlines())

    def on(name: str) -> list[strace.Call]:
        return [c for c in calls if any(w.endswith("/" + name) for _, w in c.fds)]

    # The first request is the task's (its target was new): sendfile, as every body it sends.
    assert [c.ret for c in on("small.bin") if c.name == "sendfile"] == [size]
    reads = [c for c in on("small.bin") if c.name in ("read", "pread64", "preadv", "preadv2")]
    assert [(c.name, c.ret) for c in reads] == [("pread64", size)] * 5, reads  # 2-6: inline
    on_conn = [any("TCP:" in w and "->" in w for _, w in c.fds) for c in calls]
    whole = [i for i, c in enumerate(calls)
             if on_conn[i] and c.name == "sendmsg" and c.ok and (c.ret or 0) > size]
    assert len(whole) == 5 and not [i for i in whole if "MSG_MORE" in calls[i].args], whole
    for prev, end in itertools.pairwise(whole):
        between = [calls[i].name for i in range(prev + 1, end + 1)
                   if calls[i].name == "epoll_wait" or on_conn[i] or calls[i] in reads]
        assert between == ["epoll_wait", "recvfrom", "pread64", "sendmsg"], between
    over = [c for c in on("over.bin") if c.name == "sendfile" and c.ok]
    assert len(over) == 6 and all(c.ret == size + 1 for c in over)
    assert not [c for c in on("over.bin") if c.name in ("read", "pread64")]


def test_strace_bodies_use_sendfile_and_never_read_the_file(tmp_path: Path) -> None:
    """Full, ranged and multi-range bodies: sendfile from the right offsets, no file reads."""
    from zcopy.tools import strace

    require_strace()
    for name in ("full.bin", "ranged.bin", "multi.bin"):
        (tmp_path / name).write_bytes(os.urandom(300_000))
    out = tmp_path / "strace.out"
    traced = (*strace.DATA_SYSCALLS, "setsockopt")
    with ServeProc(tmp_path, prefix=strace.command(str(out), traced)) as proc:
        full = get(proc.port, "/full.bin")
        ranged = get(proc.port, "/ranged.bin", {"Range": "bytes=200000-209999"})
        multi = get(proc.port, "/multi.bin", {"Range": "bytes=1000-1999,100000-100999"})
        head = get(proc.port, "/full.bin", method="HEAD")
        assert (full.status, ranged.status, multi.status, head.status) == (200, 206, 206, 200)
        assert full.body == (tmp_path / "full.bin").read_bytes()
        assert ranged.body == (tmp_path / "ranged.bin").read_bytes()[200000:210000]
        assert proc.stop() == 0
    calls = strace.parse_lines(out.read_text().splitlines())

    def on(name: str, path: str) -> list[strace.Call]:
        return [c for c in calls if c.name == name and any(w.endswith(path) for _, w in c.fds)]

    for name in ("full.bin", "ranged.bin", "multi.bin"):
        sent = on("sendfile", name)
        assert sent and all(c.ok for c in sent), name
        for reader in ("read", "readv", "pread64", "preadv", "preadv2"):
            assert not on(reader, name), f"{reader} of {name}: bytes went through user space"
    total_full = sum(c.ret or 0 for c in on("sendfile", "full.bin"))
    assert total_full == 300_000  # HEAD sent no body
    # Ranged bodies start where the range starts: never from offset 0.
    def offsets(path: str) -> list[int]:
        found = [re.search(r"\[(\d+)\] =>", c.args) for c in on("sendfile", path)]
        return [int(m[1]) for m in found if m]

    assert offsets("ranged.bin")[:1] == [200000]
    # Heads that precede a body are sent with MSG_MORE (one packet with the first body bytes);
    # the HEAD response's head is not, so it is not left corked.
    heads = [c for c in calls if c.name == "sendto" and c.ok]
    assert any("MSG_MORE" in c.args for c in heads)
    assert "MSG_MORE" not in heads[-1].args
    # The 300 kB body is sent corked, and every cork is lifted again (no 200 ms tail stall).
    corks = [c.args for c in calls if c.name == "setsockopt" and "TCP_CORK" in c.args]
    assert corks and [a.endswith("[1], 4") for a in corks] == [True, False] * (len(corks) // 2)
    assert offsets("multi.bin")[:2] == [1000, 100000]
    assert sum(c.ret or 0 for c in on("sendfile", "multi.bin")) == 2000
