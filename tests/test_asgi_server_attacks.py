"""``zcopy serve --app`` under attack: hostile clients, careless apps, racing signals.

Every test runs a real server subprocess on ``tests/asgi_attack_apps.py`` and
talks to it over real sockets; every wait has a timeout. Each test here failed
before the fix its docstring names.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgi_util import start
from serve_util import ServeProc, read_response, wait_for

APP = "asgi_attack_apps:app"
DATA = bytes(range(256)) * 20  # 5120 bytes: every offset has its own byte


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("asgi-attack-root")
    (d / "data.bin").write_bytes(DATA)
    os.mkfifo(d / "fifo")
    (d / "dir").mkdir()
    return d


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServeProc]:
    with start(root, APP) as proc:
        yield proc


def exchange(port: int, data: bytes, timeout: float = 5) -> tuple[bytes, str]:
    """Send ``data``, read until the server ends the connection: (bytes, how it ended).

    How: ``"eof"`` (a FIN: the client takes what came as complete when nothing else
    frames it), ``"reset"`` (a cut), or ``"timeout"`` (a hang).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            return got, "reset"
        except TimeoutError:
            return got, "timeout"
        return got, "eof"


def events(root: Path) -> str:
    """What the apps noted so far."""
    path = root / "events.log"
    return path.read_text() if path.exists() else ""


def still_serving(proc: ServeProc) -> None:
    got, _ = exchange(proc.port, b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\nok"), got[-200:]
    assert proc.proc.poll() is None


def test_pathsend_of_a_fifo_is_a_500_not_a_hung_server(server: ServeProc) -> None:
    """Was: ``os.open`` of a FIFO without O_NONBLOCK blocked the event loop: every
    connection of the process hung until some writer opened the FIFO."""
    for name in ("fifo", "dir"):
        got, how = exchange(server.port, b"GET /pathsend?name=%s HTTP/1.1\r\nHost: t\r\n\r\n" % (
            name.encode()))
        assert how != "timeout", f"pathsend of a {name} hung the server"
        assert got.startswith(b"HTTP/1.1 500 "), got[:200]
    still_serving(server)


@pytest.mark.parametrize("when", ["before", "after"])
def test_sys_exit_in_the_app_costs_one_request_not_the_server(
    server: ServeProc, when: str
) -> None:
    """Was: SystemExit went through the connection task and out of the event loop:
    one careless handler ended the whole server process."""
    got, how = exchange(server.port, b"GET /exit?when=%s HTTP/1.1\r\nHost: t\r\n\r\n" % (
        when.encode()))
    if when == "before":
        assert got.startswith(b"HTTP/1.1 500 "), got[:200]
    else:
        assert b"part" in got and how == "reset" and not got.endswith(b"0\r\n\r\n")
    still_serving(server)
    assert "exception in the app" in server.stderr()


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_a_body_cut_midway_is_a_reset_never_a_clean_end(server: ServeProc, version: str) -> None:
    """Was: after the app raised mid-body the server lingered, i.e. sent a FIN: an HTTP/1.0
    body (framed by the end of the connection) arrived truncated and looked complete."""
    request = b"GET /raise-midway HTTP/%s\r\nHost: t\r\n\r\n" % version.encode()
    for _ in range(3):
        got, how = exchange(server.port, request)
        assert how == "reset", f"{how} after {got[-40:]!r}: a cut body must not end cleanly"


def test_zerocopysend_without_offset_starts_at_a_buffered_files_position(
    server: ServeProc,
) -> None:
    """Was: the position was the fd's (``lseek``), which a buffered reader has moved
    past what it handed out: the client got bytes from the wrong place."""
    with server.connect() as s:
        s.sendall(b"GET /buffered-rest?name=data.bin&skip=10 HTTP/1.1\r\nHost: t\r\n\r\n")
        with s.makefile("rb") as f:
            r = read_response(f, head=True)
            assert r.headers.get("transfer-encoding") == "chunked"
            body = b""
            while size := int(f.readline(), 16):
                body += f.read(size)
                f.readline()
    assert body == DATA[10:]


@pytest.mark.parametrize(
    "target",
    [
        "/str-body",
        "/str-body?chunked=1",
        "/bad-count?name=data.bin&count=-5",
        "/bad-count?name=data.bin&offset=-5",
    ],
)
def test_a_malformed_message_is_a_500_before_a_byte_is_written(
    server: ServeProc, target: str
) -> None:
    """Was: the head counted as sent before the message was checked: the client got a
    cut (after a ``-5`` chunk-size line, for a negative count) instead of a 500."""
    got, _ = exchange(server.port, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target.encode())
    assert got.startswith(b"HTTP/1.1 500 "), got[:300]


def test_a_malformed_chunked_body_is_a_400(server: ServeProc) -> None:
    """Was: the app heard ``http.disconnect`` and the client, still there, got nothing
    (a FIN) instead of the 400 its bad chunk size calls for."""
    got, how = exchange(server.port, b"POST /echo HTTP/1.1\r\nHost: t\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n")
    assert got.startswith(b"HTTP/1.1 400 "), (how, got[:300])


def test_sigterm_lets_an_upload_the_app_is_reading_finish(root: Path) -> None:
    """Was: a connection whose app was waiting in ``receive()`` for body bytes counted
    as idle: SIGTERM cancelled the app mid-upload and the client got a bare FIN."""
    with start(root, APP) as proc:
        with proc.connect() as s:
            s.sendall(b"POST /upload-slowly HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            wait_for(lambda: "upload: 3" in events(root), timeout=5,
                     what="the app to read the first piece")
            time.sleep(0.2)  # past its pause: the app waits in receive() for the rest
            os.kill(proc.pid, signal.SIGTERM)
            time.sleep(0.2)
            s.sendall(b"defghij")
            with s.makefile("rb") as f:
                r = read_response(f)
        assert (r.status, r.body) == (200, b"10")
        assert r.headers.get("connection") == "close"
        assert proc.proc.wait(10) == 0


def test_pipelined_input_behind_a_long_response_is_bounded(server: ServeProc) -> None:
    """Was: while an app waited for the disconnect (an event stream), every pipelined
    request head was parsed and kept: about 1 KiB of server memory per 30 bytes sent."""

    def rss_kib() -> int:
        with open(f"/proc/{server.pid}/status") as f:
            line = next(x for x in f if x.startswith("VmRSS"))
        return int(line.split()[1])

    with server.connect(timeout=0.5) as s:
        s.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b"data: hello" in s.recv(4096)
        before = rss_kib()
        flood = b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n" * 10000
        began = time.monotonic()
        with pytest.raises(TimeoutError):  # the server stops reading: our sends stall
            while time.monotonic() - began < 1.5:
                s.sendall(flood)
        grew = rss_kib() - before
    assert grew < 32 * 1024, f"the server grew by {grew} KiB for one client's pipelined heads"
    still_serving(server)


def test_several_stray_receive_tasks_cost_the_next_request_no_wait(server: ServeProc) -> None:
    """Was: the first stray was stopped, the next took the read lock and waited on the
    socket: the next request on the connection sat out ``settle``'s 1 s bound."""
    with server.connect(timeout=5) as s, s.makefile("rb") as f:
        for _ in range(3):
            s.sendall(b"POST /strays HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
            assert read_response(f).body == b"ok"
            began = time.monotonic()
            s.sendall(b"0123456789GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(f).body == b"ok"
            took = time.monotonic() - began
            assert took < 0.5, f"the request after the strays waited {took:.2f}s"


def test_a_stream_cut_by_the_end_of_shutdown_is_a_reset(root: Path) -> None:
    """Was: the shutdown's cancellation closed with a FIN: an HTTP/1.0 stream (framed by
    the close) still running at the end of ``--shutdown-timeout`` looked complete."""
    with start(root, APP, "--shutdown-timeout", "0.3") as proc, proc.connect() as s:
        s.sendall(b"GET /stream-slowly?n=40 HTTP/1.0\r\n\r\n")
        assert s.recv(4096)
        os.kill(proc.pid, signal.SIGTERM)
        got = b""
        with pytest.raises(ConnectionResetError):
            while chunk := s.recv(65536):
                got += chunk
        assert b"end\n" not in got
        assert proc.proc.wait(10) == 0
