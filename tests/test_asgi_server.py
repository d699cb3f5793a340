"""``zcopy serve --app``: real Starlette and FastAPI apps in a server subprocess, real clients.

One server per module serves most tests (a Starlette app starts in about a
second); tests that need their own command line start their own.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgi_util import TESTS, request, start
from serve_util import SRC, ServeProc, read_response, wait_for

SMALL = 4096
BIG = 3 << 20


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("asgi-root")
    (d / "small.txt").write_bytes(os.urandom(SMALL))
    (d / "big.bin").write_bytes(os.urandom(BIG))
    (d / "sub").mkdir()
    (d / "sub" / "page.html").write_bytes(b"<p>static</p>\n")
    return d


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServeProc]:
    with start(root, "asgi_fastapi:app") as proc:
        yield proc


@pytest.fixture(scope="module")
def raw_server(root: Path) -> Iterator[ServeProc]:
    with start(root, "asgi_apps:raw_app", "--root-path", "/mnt") as proc:
        yield proc


# --- the scope, plain responses, files ------------------------------------------------------


def test_scope_is_complete(server: ServeProc) -> None:
    resp, body = request(server.port, "GET", "/scope?a=1&b=%20", headers={"X-Thing": "Yes"})
    text = body.decode()
    assert resp.status == 200
    assert "http_version='1.1'" in text and "method='GET'" in text and "scheme='http'" in text
    assert "path='/scope'" in text and "raw_path=b'/scope'" in text
    assert "query_string=b'a=1&b=%20'" in text and "root_path=''" in text
    assert "client=('127.0.0.1', " in text and f"server=('127.0.0.1', {server.port})" in text
    assert "asgi={'version': '3.0', 'spec_version': '2.4'}" in text
    assert "extensions=['http.response.pathsend', 'http.response.zerocopysend']" in text
    assert "(b'x-thing', b'Yes')" in text  # names lowercased, values as sent


def test_a_path_that_is_not_utf8_reaches_the_app_as_u_fffd(server: ServeProc) -> None:
    """``/%FF`` is U+FFFD in ``path``, as under uvicorn: an app writing it back answers 200.

    A lone surrogate (the lossless decoding) made Starlette's own response fail to encode
    it: a 500 and a traceback for a hostile URL.
    """
    resp, body = request(server.port, "GET", "/path/a%FFb")
    assert resp.status == 200 and body.decode() == "/path/a\ufffdb"


def test_plain_text_keep_alive(server: ServeProc) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for _ in range(3):  # one connection, three requests
        conn.request("GET", "/plain")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"hello, world")
        assert resp.getheader("content-length") == "12" and resp.getheader("date")
    conn.close()


@pytest.mark.parametrize("prefix", ["/file", "/static", "/fastapi/file", "/zfile"])
@pytest.mark.parametrize("name", ["small.txt", "big.bin"])
def test_file_responses_are_byte_exact(
    server: ServeProc, root: Path, prefix: str, name: str
) -> None:
    """Starlette FileResponse, StaticFiles, FastAPI FileResponse, zcopy.asgi.FileResponse."""
    resp, body = request(server.port, "GET", f"{prefix}/{name}")
    assert resp.status == 200
    assert body == (root / name).read_bytes()
    assert resp.getheader("content-length") == str(len(body))


@pytest.mark.parametrize("prefix", ["/file", "/zfile"])
def test_head_sends_no_body(server: ServeProc, prefix: str) -> None:
    with server.connect() as s:
        s.sendall(f"HEAD {prefix}/big.bin HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        s.sendall(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        with s.makefile("rb") as f:
            head = read_response(f, head=True)
            after = read_response(f)
    assert head.status == 200 and head.headers["content-length"] == str(BIG)
    assert after.body == b"hello, world"  # nothing of the file came between the two


@pytest.mark.parametrize("prefix", ["/file", "/zfile"])
def test_single_range(server: ServeProc, root: Path, prefix: str) -> None:
    resp, body = request(
        server.port, "GET", f"{prefix}/big.bin", headers={"Range": "bytes=1000-70999"}
    )
    assert resp.status == 206
    assert body == (root / "big.bin").read_bytes()[1000:71000]


def test_zcopy_file_response_multipart(server: ServeProc, root: Path) -> None:
    data = (root / "big.bin").read_bytes()
    resp, body = request(
        server.port, "GET", "/zfile/big.bin", headers={"Range": "bytes=0-9,2000000-2000099,-5"}
    )
    assert resp.status == 206
    ctype = resp.getheader("content-type") or ""
    boundary = ctype.split("boundary=")[1].encode()
    parts = body.split(b"--" + boundary)[1:-1]
    got = [p.split(b"\r\n\r\n", 1)[1][:-2] for p in parts]
    assert got == [data[0:10], data[2000000:2000100], data[-5:]]
    assert body.endswith(b"--" + boundary + b"--\r\n")


def test_zerocopysend_offsets_counts_and_chunked(raw_server: ServeProc, root: Path) -> None:
    data = (root / "big.bin").read_bytes()
    # no Content-Length: the server frames the pieces as chunks
    pieces = "pieces=0:10,5000:3,100:0,9:1"
    resp, body = request(raw_server.port, "GET", f"/zerocopy?name=big.bin&{pieces}")
    assert resp.status == 200 and resp.getheader("transfer-encoding") == "chunked"
    assert body == data[0:10] + data[5000:5003] + data[9:10]
    # with a Content-Length, as a whole file from an offset
    resp, body = request(
        raw_server.port, "GET", f"/zerocopy?name=big.bin&length={BIG - 7}&pieces=7:{BIG - 7}"
    )
    assert resp.status == 200 and body == data[7:]


def test_pathsend_sends_what_the_head_promised(raw_server: ServeProc, root: Path) -> None:
    """A file that grew since the app sized the response: exactly the promised bytes."""
    data = (root / "big.bin").read_bytes()
    with raw_server.connect() as s:
        s.sendall(b"GET /pathsend?name=big.bin&length=1000 HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /pathsend?name=small.txt&length=4096 HTTP/1.1\r\nHost: t\r\n\r\n")
        with s.makefile("rb") as f:
            first, second = read_response(f), read_response(f)
    assert first.body == data[:1000]
    assert second.body == (root / "small.txt").read_bytes()


def test_pathsend_of_a_file_that_shrank_is_a_500(raw_server: ServeProc) -> None:
    """Shorter than the head promised, found before the head left: a 500, never a short body."""
    resp, _ = request(raw_server.port, "GET", "/pathsend?name=small.txt&length=9999")
    assert resp.status == 500 and resp.getheader("content-length") != "9999"
    wait_for(lambda: "the response promised 9999" in raw_server.stderr(), what="the error line")


def test_two_tasks_receiving_share_the_body(raw_server: ServeProc) -> None:
    """Two receive() calls waiting on the socket at once: each gets its piece, none hangs."""
    with raw_server.connect() as s:
        s.sendall(b"POST /two-readers HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
        time.sleep(0.3)  # both tasks are now waiting for body bytes
        s.sendall(b"12345")
        time.sleep(0.3)
        s.sendall(b"67890")
        with s.makefile("rb") as f:
            r = read_response(f)
    assert (r.status, r.body) == (200, b"5+5")


def test_a_stray_receive_task_does_not_hold_the_connection(raw_server: ServeProc) -> None:
    with raw_server.connect() as s:
        s.sendall(b"POST /stray-reader HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
        with s.makefile("rb") as f:
            assert read_response(f).body == b"ok"
            s.sendall(b"0123456789GET /no-response HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(f).status == 500  # the next request is still answered


def test_a_stray_disconnect_waiter_does_not_stall_the_next_request(
    raw_server: ServeProc,
) -> None:
    with raw_server.connect(timeout=5) as s:
        s.sendall(b"POST /stray-waiter HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        with s.makefile("rb") as f:
            assert read_response(f).body == b"ok"
            time.sleep(0.2)
            s.sendall(b"GET /no-response HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(f).status == 500  # answered at once, not at the idle timeout


# --- streaming, bodies, Expect --------------------------------------------------------------


def test_streaming_response_is_chunked(server: ServeProc) -> None:
    resp, body = request(server.port, "GET", "/stream?n=50")
    assert resp.getheader("transfer-encoding") == "chunked"
    assert body == b"".join(f"part {i}\n".encode() for i in range(50))


def test_echo_with_content_length(server: ServeProc) -> None:
    payload = os.urandom(5 << 20)
    resp, body = request(server.port, "POST", "/echo", body=payload)
    assert resp.status == 200 and body == payload


def test_echo_chunked_upload(server: ServeProc) -> None:
    pieces = [os.urandom(n) for n in (1, 1000, 70000, 3)]
    raw = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    with server.connect() as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(raw), 4096):  # in small writes: the app sees several pieces
            s.sendall(raw[i : i + 4096])
        with s.makefile("rb") as f:
            r = read_response(f)
    assert r.status == 200 and r.body == b"".join(pieces)


def test_expect_100_continue(server: ServeProc) -> None:
    with server.connect() as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        with s.makefile("rb") as f:
            assert f.readline() == b"HTTP/1.1 100 Continue\r\n" and f.readline() == b"\r\n"
            s.sendall(b"hello")
            r = read_response(f)
    assert r.status == 200 and r.body == b"hello"


def test_pipelining_answers_in_order(server: ServeProc, root: Path) -> None:
    small = (root / "small.txt").read_bytes()
    reqs = []
    for i in range(30):
        if i % 3 == 0:
            reqs.append(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
        elif i % 3 == 1:
            reqs.append(b"GET /file/small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        else:
            reqs.append(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n%03d" % i)
    with server.connect() as s:
        s.sendall(b"".join(reqs))
        with s.makefile("rb") as f:
            bodies = [read_response(f).body for _ in reqs]
    for i, body in enumerate(bodies):
        assert body == [b"hello, world", small, b"%03d" % i][i % 3], i


def test_backpressure_holds_the_app(server: ServeProc, root: Path) -> None:
    """A client that does not read: ``await send`` waits, so the app stops producing."""
    events = root / "events.log"
    with server.connect() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big-stream HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(1.0)
        produced = events.read_text().count("sent ")
        assert produced < 40, f"the app produced {produced} MiB for a client that reads nothing"
        total = 0
        with s.makefile("rb") as f:
            r = read_response(f, head=True)
            assert r.headers.get("transfer-encoding") == "chunked"
            while True:
                size = int(f.readline(), 16)
                if size == 0:
                    break
                total += len(f.read(size))
                f.readline()
    assert total == 64 << 20


def test_client_leaving_a_stream_is_no_app_error(server: ServeProc) -> None:
    before = server.stderr().count("exception in the app")
    with server.connect() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big-stream HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(65536)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    time.sleep(0.5)
    assert request(server.port, "GET", "/plain")[1] == b"hello, world"
    assert server.stderr().count("exception in the app") == before, server.stderr()[-2000:]


def test_clients_resetting_mid_file_leave_no_fd_open(server: ServeProc) -> None:
    """pathsend opens the file: 40 clients that reset mid-body must not leave one open."""
    def files_open() -> int:
        return sum("big.bin" in what for what in server.fds())

    for i in range(40):
        with server.connect() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            prefix = ("/file", "/static", "/zfile", "/fastapi/file")[i % 4]
            s.sendall(f"GET {prefix}/big.bin HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            assert s.recv(1024)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    wait_for(lambda: files_open() == 0, timeout=15, what="every big.bin fd to close")
    assert request(server.port, "GET", "/plain")[1] == b"hello, world"


# --- failures -------------------------------------------------------------------------------


def test_exception_before_start_is_500_with_traceback(server: ServeProc) -> None:
    resp, _ = request(server.port, "GET", "/boom")
    assert resp.status == 500
    wait_for(lambda: "boom before the response" in server.stderr(), what="the traceback")
    assert "Traceback (most recent call last)" in server.stderr()


def test_exception_after_start_cuts_the_connection(server: ServeProc) -> None:
    with server.connect() as s:
        s.sendall(b"GET /boom-midway HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert b"first part" in data
    assert not data.endswith(b"0\r\n\r\n")  # never a clean end of the chunked body


def test_exception_after_a_complete_response_is_logged_and_the_response_counted(
    server: ServeProc,
) -> None:
    """The client got all of it: a traceback in the error log, and its access-log line."""
    resp, body = request(server.port, "GET", "/boom-after")
    assert resp.status == 200 and body == b"done"
    wait_for(lambda: "boom after the response was complete" in server.stderr(), what="traceback")
    wait_for(lambda: '"GET /boom-after HTTP/1.1" 200 4' in server.access_log(), timeout=5,
             what="the access-log line")


def test_bad_header_from_the_app_is_never_sent(raw_server: ServeProc) -> None:
    resp, body = request(raw_server.port, "GET", "/bad-header")
    assert resp.status == 500 and resp.getheader("set-cookie") is None and b"never" not in body


@pytest.mark.parametrize(("path", "status"), [("/no-response", 500), ("/too-long", 500)])
def test_broken_apps_get_a_500(raw_server: ServeProc, path: str, status: int) -> None:
    resp, _ = request(raw_server.port, "GET", path)
    assert resp.status == status


def test_client_gone_mid_upload_is_a_disconnect(server: ServeProc, root: Path) -> None:
    events = root / "events.log"
    with server.connect() as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        s.sendall(b"x" * 1000)
        time.sleep(0.2)
    wait_for(lambda: "upload ended: ClientDisconnect after 1000" in events.read_text(),
             what="the app to see the disconnect")
    _, body = request(server.port, "GET", "/plain")  # and the server goes on
    assert body == b"hello, world"


def test_disconnect_reaches_an_app_waiting_on_receive(raw_server: ServeProc, root: Path) -> None:
    events = root / "events.log"
    with raw_server.connect() as s:
        s.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b"waiting" in s.recv(4096) or b"waiting" in s.recv(4096)
    wait_for(lambda: "saw http.disconnect" in events.read_text(), what="http.disconnect")


def test_a_trickled_body_gets_no_more_than_the_body_timeout(root: Path) -> None:
    """One byte every 0.2 s never extends the body deadline; the app hears the disconnect."""
    with start(root, "asgi_apps:app", "--body-timeout", "1") as proc, proc.connect() as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        began = time.monotonic()
        closed = False
        while time.monotonic() - began < 6 and not closed:
            try:
                s.sendall(b"x")
                s.settimeout(0.2)
                closed = s.recv(4096) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        took = time.monotonic() - began
        assert closed and took < 4, f"still open after {took:.1f}s of trickling"
    assert "upload ended: ClientDisconnect" in (root / "events.log").read_text()


def test_websocket_is_refused_with_a_handshake_rejection(server: ServeProc) -> None:
    with server.connect() as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        with s.makefile("rb") as f:
            r = read_response(f)
    assert r.status == 403 and b"not supported" in r.body and b"yet" in r.body
    assert server.proc.poll() is None


# --- command line, lifespan, workers, loops -------------------------------------------------


def test_lifespan_state_and_shutdown(root: Path, tmp_path: Path) -> None:
    (tmp_path / "small.txt").write_bytes(b"x")
    with start(tmp_path) as proc:
        _, body = request(proc.port, "GET", "/state")
        assert body == b"hello from lifespan"
        # What startup made (the app, the lifespan state) is frozen out of the collector's way.
        _, body = request(proc.port, "GET", "/frozen")
        assert int(body) > 1000
        assert proc.stop() == 0
    assert (tmp_path / "events.log").read_text().splitlines() == ["startup", "shutdown"]


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_lifespan_failure_stops_the_server(tmp_path: Path, mode: str) -> None:
    with pytest.raises(RuntimeError, match="did not start") as info:
        start(tmp_path, "asgi_apps:app", "--lifespan", mode, ZCOPY_TEST_LIFESPAN="raise")
    assert "the database is down" in str(info.value)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(
        [sys.executable, "-m", "zcopy.serve", *args, "--port", "0"],
        capture_output=True, text=True, timeout=30, env=env, cwd=cwd,
    )


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("nosuchmodule:app", "no module named 'nosuchmodule'"),
        ("asgi_apps:nothing", "has no attribute 'nothing'"),
        ("asgi_apps", "expected MODULE:ATTR"),
        ("asgi_apps:ROOT", "is not an ASGI app"),
    ],
)
def test_app_load_errors_are_one_line(app: str, message: str) -> None:
    done = run_cli("--app", app, "--app-dir", str(TESTS))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


@pytest.mark.parametrize("directory", ["site", "."])
def test_a_directory_beside_app_is_a_usage_error(tmp_path: Path, directory: str) -> None:
    """The app answers every path: a DIR given with it would be silently ignored."""
    (tmp_path / "site").mkdir()
    done = run_cli(directory, "--app", "asgi_apps:app", "--app-dir", str(TESTS), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"{directory}: a directory and --app exclude each other" in done.stderr
    assert done.stdout == ""  # never served


@pytest.mark.parametrize("workers", [1, 2])
def test_sigusr1_prints_every_workers_stats_with_stats_on(root: Path, workers: int) -> None:
    with start(root, "asgi_apps:app", "--stats", "--workers", str(workers)) as proc:
        assert len(request(proc.port, "GET", "/file/small.txt")[1]) > 0
        for expected in (workers, 2 * workers):  # forwarded each time, and nobody dies of it
            os.kill(proc.pid, signal.SIGUSR1)

            def printed(n: int = expected) -> bool:
                return proc.stderr().count("stats (pid") == n

            wait_for(printed, what=f"{expected} stats lines")
        pids = set(re.findall(r"stats \(pid (\d+)\)", proc.stderr()))
        assert len(pids) == workers
        assert request(proc.port, "GET", "/plain")[1] == b"hello, world"
        assert proc.stop() == 0


def test_factory_and_uvloop(root: Path) -> None:
    pytest.importorskip("uvloop")
    with start(root, "asgi_apps:make_app", "--factory", "--loop", "uvloop") as proc:
        assert request(proc.port, "GET", "/plain")[1] == b"hello, world"
        assert request(proc.port, "GET", "/file/small.txt")[0].status == 404
        assert proc.stop() == 0


def test_workers_share_the_port_and_stop_cleanly(root: Path) -> None:
    with start(root, "asgi_apps:app", "--workers", "2") as proc:
        pids = {request(proc.port, "GET", "/scope")[0].status for _ in range(8)}
        assert pids == {200}
        assert proc.stop() == 0


def test_stats_count_the_sendfile_bytes(root: Path) -> None:
    with start(root, "asgi_apps:app", "--stats") as proc:
        assert len(request(proc.port, "GET", "/file/big.bin")[1]) == BIG
        assert proc.stop(signal.SIGTERM) == 0
        err = proc.stderr()
    m = re.search(r"sendfile (\d+) bytes", err)
    assert m and int(m[1]) >= BIG, err
