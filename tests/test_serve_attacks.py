"""``zcopy serve`` attacked from 127.0.0.1: tricklers, floods, resets, swapped directories, no fds.

Each test runs a real server process with short timeouts on its command line and
asserts the defence from the client side (or from /proc, for CPU and fds).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from serve_util import (
    ServeProc,
    cpu_seconds,
    raw_request,
    read_response,
    request_bytes,
    wait_for,
)

BIG = 8 * 1024 * 1024


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_bytes(b"a\n")
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))
    (tmp_path / "data.bin").write_bytes(os.urandom(100_000))
    return tmp_path


# --- 1. trickling: bytes never extend a deadline -----------------------------------------


def _closed_now(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_tricklers_and_silent_clients_are_closed_and_free_the_cap(site: Path) -> None:
    """Empty lines, a head or a body one byte every 0.2 s: closed at --header/--body-timeout.

    The cap (5) is full of them meanwhile; once they are closed, a real client gets 200.
    """
    with ServeProc(
        site, "--max-connections", "5", "--header-timeout", "1", "--body-timeout", "1",
        "--keepalive-timeout", "30",
    ) as proc:
        keep = proc.connect()  # one request, then empty lines instead of the next
        keep.sendall(request_bytes("/a.txt"))
        with keep.makefile("rb") as f:
            assert read_response(f).status == 200
        crlf = proc.connect()  # empty lines before any request (nginx closes at its header timeout)
        head = proc.connect()
        head.sendall(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        body = proc.connect()
        body.sendall(request_bytes("/a.txt", "Content-Length: 100000"))
        silent = proc.connect()
        trickle = {keep: b"\r\n", crlf: b"\r\n", head: b"x", body: b"y"}
        for s in (keep, crlf, head, body, silent):
            s.setblocking(False)
        wait_for(lambda: raw_request(proc.port, request_bytes("/a.txt"))[0] == 503,
                 timeout=5, what="the cap to be full")
        start = time.monotonic()
        closed: dict[socket.socket, float] = {}
        while len(closed) < 5 and time.monotonic() - start < 8:
            for s in (keep, crlf, head, body, silent):
                if s in closed:
                    continue
                if _closed_now(s):
                    closed[s] = time.monotonic() - start
                elif s in trickle:
                    try:
                        s.send(trickle[s])
                    except OSError:
                        closed[s] = time.monotonic() - start
            time.sleep(0.2)
        assert len(closed) == 5, "a trickler held its connection past every deadline"
        # 1 s deadline + a 0.5 s sweep (+ a busy machine); keep-alive (30 s) never applies
        assert max(closed.values()) < 5, closed.values()
        status, _, _ = raw_request(proc.port, request_bytes("/a.txt"))
        assert status == 200
        stderr = proc.stderr()
        assert "header timeout" in stderr and "request body timeout" in stderr
        for s in (keep, crlf, head, body, silent):
            s.close()


def test_a_flood_of_refused_connections_does_not_pile_up_fds(site: Path) -> None:
    """Over the cap, each refused socket waits up to 1 s to close: at most 256 at a time."""
    with ServeProc(site, "--max-connections", "1") as proc, proc.connect() as held:
        held.sendall(request_bytes("/a.txt"))
        with held.makefile("rb") as f:
            assert read_response(f).status == 200
        base = len(proc.fds())
        peak = 0
        for i in range(600):
            proc.connect().close()
            if i % 50 == 0:
                peak = max(peak, len(proc.fds()))
        time.sleep(0.2)
        peak = max(peak, len(proc.fds()))
        assert peak <= base + 256 + 8, (base, peak)
        wait_for(lambda: len(proc.fds()) <= base, what="refused sockets to be closed")


# --- 2. fairness -------------------------------------------------------------------------


_HEAVY = "Range: bytes=" + ",".join(f"{i * 262144}-{i * 262144 + 4095}" for i in range(32))


@pytest.mark.parametrize(
    ("flood_request", "n"),
    [
        # before the fix, the victim waited for all of them (2.5 s for 5,000)
        (request_bytes("/a.txt"), 8_000),
        (request_bytes("/big.bin", _HEAVY), 600),  # 32-part multipart/byteranges each
    ],
    ids=["small-gets", "heavy-ranges"],
)
def test_a_pipelining_flood_does_not_starve_another_client(
    site: Path, flood_request: bytes, n: int
) -> None:
    """Thousands of pipelined GETs (or hundreds of 32-range ones) on one connection; a
    second client's GET is answered mid-flood.

    Proof from the server's own access log: the victim's line comes before most of the
    flood's, though the victim connected after the flood began.
    """
    flood_path = flood_request.split(b" ")[1].decode()
    with ServeProc(site, "--max-requests", str(n)) as proc:
        flood = proc.connect(timeout=60)
        received = [0]
        started = threading.Event()

        def drain() -> None:
            while chunk := flood.recv(1 << 20):
                received[0] += len(chunk)
                started.set()

        reader = threading.Thread(target=drain)
        reader.start()
        sender = threading.Thread(target=flood.sendall, args=(flood_request * n,))
        sender.start()
        assert started.wait(20)
        victim = raw_request(proc.port, request_bytes("/data.bin"))
        assert victim[0] == 200
        sender.join(60)
        reader.join(60)  # the server closes after request n (--max-requests)
        flood.close()
        wait_for(
            lambda: proc.access_log().count(flood_path) >= n and "/data.bin" in proc.access_log(),
            what="every log line",
        )
        lines = proc.access_log().splitlines()
        position = next(i for i, line in enumerate(lines) if "/data.bin" in line)
        assert position < n // 2, f"the victim was answered after {position} of {n} flood requests"


def test_max_requests_closes_the_connection(site: Path) -> None:
    with ServeProc(site, "--max-requests", "3") as proc, proc.connect() as s:
        s.sendall(request_bytes("/a.txt") * 5)
        with s.makefile("rb") as f:
            replies = [read_response(f) for _ in range(3)]
            assert f.read() == b""  # closed after the third; the rest are for a new connection
        assert [r.status for r in replies] == [200, 200, 200]
        assert [r.headers.get("connection") for r in replies] == [None, None, "close"]


# --- 3. range cap --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        ["Range: bytes=" + ",".join([f"{i * 1000}-{i * 1000}" for i in range(32)] + ["-1"] * 500)],
        ["Range: bytes=" + ",".join(["-1"] * 2000)],
        ["Range: bytes=0-0", "Range: bytes=10-10"],  # repeated fields: documented as ignored
        ["Range: bytes=0-0"] + ["Range: bytes=" + ",".join(["-1"] * 30)] * 20,
    ],
)
def test_range_cap_counts_every_spec(site: Path, fields: list[str]) -> None:
    with ServeProc(site) as proc:
        status, headers, body = raw_request(proc.port, request_bytes("/data.bin", *fields))
    assert (status, len(body)) == (200, 100_000)
    assert "content-range" not in headers


# --- 4. lingering close --------------------------------------------------------------------


def _close_then_more(proc: ServeProc, head: bytes) -> tuple[int, int]:
    """Ask for big.bin with a close; once it is on its way, send another request; read it all.

    The second request lies unread in the server's socket when the body is done: a plain
    close() would answer it with a RST, which destroys the body's unsent tail.
    """
    with proc.connect(timeout=20) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(head)
        with s.makefile("rb") as f:
            assert f.peek(1)  # the response has begun: the request was read alone
            s.sendall(request_bytes("/a.txt"))
            time.sleep(0.3)  # the server sends what fits, then wants to close
            r = read_response(f)
    return r.status, len(r.body)


@pytest.mark.parametrize(
    "head",
    [
        request_bytes("/big.bin", "Connection: close"),
        b"GET /big.bin HTTP/1.0\r\n\r\n",
    ],
    ids=["connection-close", "http10"],
)
def test_bodies_survive_unread_input_at_close(site: Path, head: bytes) -> None:
    with ServeProc(site) as proc:
        results = [_close_then_more(proc, head) for _ in range(10)]
    assert results == [(200, BIG)] * 10


def test_error_response_survives_unread_input(site: Path) -> None:
    with ServeProc(site) as proc, proc.connect() as s:
        s.sendall(b"GET /a.txt HTTP/1.1\r\nBad Header\r\n\r\n" + b"x" * 200_000)
        time.sleep(0.2)
        with s.makefile("rb") as f:
            r = read_response(f)
        assert r.status == 400 and r.body.startswith(b"<!doctype html>")


def test_sigterm_finishes_the_body_for_a_client_that_sent_its_next_request(site: Path) -> None:
    proc = ServeProc(site)
    try:
        s = proc.connect(timeout=20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(request_bytes("/big.bin"))
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        s.sendall(request_bytes("/a.txt"))  # the next request, unread when SIGTERM comes
        time.sleep(0.1)
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.3)
        while f.readline() != b"\r\n":
            pass
        assert len(f.read(BIG)) == BIG
        # The request already received is answered with close (or not at all), then a FIN:
        # never a reset that would destroy the body's tail.
        rest = f.read()
        assert rest == b"" or (rest.startswith(b"HTTP/1.1 200") and b"Connection: close" in rest)
        f.close()
        s.close()
        proc.proc.wait(20)
        assert proc.proc.returncode == 0
    finally:
        proc.stop()


# --- 5. listing race -----------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchanger(a: Path, b: Path, stop: threading.Event) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    old, new = os.fsencode(a), os.fsencode(b)
    while not stop.is_set():
        if libc.renameat2(_AT_FDCWD, old, _AT_FDCWD, new, _RENAME_EXCHANGE) != 0:
            raise OSError(ctypes.get_errno(), "renameat2")


def test_listing_race_never_escapes_the_root(tmp_path: Path) -> None:
    """``d`` is swapped with a symlink to /etc (renameat2 RENAME_EXCHANGE) in a loop."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_bytes(b"x")
    os.symlink("/etc", tmp_path / "x")
    etc_names = {n for n in os.listdir("/etc") if not n.startswith(".")} - {"mine.txt"}
    stop = threading.Event()
    with ServeProc(tmp_path, "--max-requests", "5000") as proc, proc.connect() as s, \
            s.makefile("rb") as f:
        swapper = threading.Thread(target=_exchanger, args=(tmp_path / "d", tmp_path / "x", stop))
        swapper.start()
        try:
            statuses: dict[int, int] = {}
            for i in range(2000):
                s.sendall(request_bytes("/d/"))
                try:
                    r = read_response(f)
                except ConnectionError:
                    raise AssertionError(f"closed after {i}: {proc.stderr()}") from None
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 200:
                    page = r.body.decode()
                    assert "mine.txt" in page
                    leaked = [n for n in etc_names if f">{n}<" in page or f">{n}/<" in page]
                    assert not leaked, f"/etc listed: {leaked[:5]}"
        finally:
            stop.set()
            swapper.join()
    assert statuses.get(200, 0) > 0 and statuses.get(404, 0) > 0, statuses  # the race ran


def test_dotfiles_and_outside_links_by_resolved_name(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / ".env").write_bytes(b"SECRET=1\n")
    (root / "ok.txt").write_bytes(b"ok\n")
    os.symlink(".env", root / "envlink")
    (tmp_path / "outside.bin").write_bytes(b"z" * 123_456)
    os.symlink(tmp_path / "outside.bin", root / "outlink")
    with ServeProc(root) as proc:
        assert raw_request(proc.port, request_bytes("/envlink"))[0] == 404
        assert raw_request(proc.port, request_bytes("/outlink"))[0] == 404
        _, _, page = raw_request(proc.port, request_bytes("/"))
    assert b"ok.txt" in page
    assert b"envlink" not in page and b"outlink" not in page and b"120.6 KiB" not in page


# --- 6. fd exhaustion ----------------------------------------------------------------------


def test_out_of_fds_is_503_and_accept_backs_off(site: Path) -> None:
    limit = 48
    with ServeProc(site, prefix=("prlimit", f"--nofile={limit}:{limit}", "--")) as proc:
        first = proc.connect()
        first.sendall(request_bytes("/a.txt"))
        f = first.makefile("rb")
        assert read_response(f).status == 200
        extra = []
        for _ in range(limit):  # fill every fd the server has left; the rest wait in the backlog
            extra.append(proc.connect())
        wait_for(lambda: len(proc.fds()) >= limit, what="the server to run out of fds")
        for path in ("/data.bin", "/"):
            first.sendall(request_bytes(path))
            r = read_response(f)
            assert (r.status, r.headers.get("retry-after")) == (503, "1"), path
        before = cpu_seconds(proc.pid)
        time.sleep(1.0)
        assert cpu_seconds(proc.pid) - before < 0.3  # backing off, not spinning on accept
        assert proc.stderr().count("accept failed") == 1
        for s in extra:
            s.close()
        wait_for(lambda: len(proc.fds()) < limit - 8, what="fds to come back")
        first.sendall(request_bytes("/data.bin"))
        assert read_response(f).status == 200
        f.close()
        first.close()
