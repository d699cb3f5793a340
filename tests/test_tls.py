"""TLS is never bypassed: sockets, makefile() and SocketIO over an SSLSocket go through the object.

Each test runs a real TLS connection over 127.0.0.1 with a certificate
generated here. The attacks of issue 9: plaintext sent past TLS into the raw
fd (sink), ciphertext read from the raw fd (source), a timeout that loses the
count of what the peer got, a non-blocking TLS socket that raises instead of
waiting. The strace test proves from outside that no kernel route touched the
TLS fd.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import calls_on, copy_by, run_traced
from tls_util import Cert, Reader, make_cert, tls_pair

import zcopy
from zcopy.tools.strace import Call

pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]

DATA = os.urandom(3 << 20)
WRITES = ("write", "writev", "sendto", "sendmsg")
READS = ("read", "readv", "recvfrom", "recvmsg")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def pair(cert: Cert) -> Iterator[tuple[ssl.SSLSocket, ssl.SSLSocket]]:
    client, server = tls_pair(cert)
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def _sink(kind: str, tls: ssl.SSLSocket) -> object:
    if kind == "socket":
        return tls
    if kind == "makefile":
        return tls.makefile("wb")
    return socket.SocketIO(tls, "wb")


@pytest.mark.parametrize("kind", ["socket", "makefile", "socketio"])
def test_file_to_tls_sink_is_encrypted_and_exact(
    kind: str, pair: tuple[ssl.SSLSocket, ssl.SSLSocket], src_file: Path
) -> None:
    client, server = pair
    sink = _sink(kind, client)
    reader = Reader(server)
    with open(src_file, "rb") as f:
        plan = zcopy.explain(sink, f)
        assert plan.route is zcopy.Route.USERSPACE
        assert "TLS socket" in str(plan), str(plan)
        if kind == "makefile":
            sink.write(b"head")  # type: ignore[attr-defined]  # still in the BufferedWriter
        assert zcopy.copy(sink, f) == len(DATA)
        assert f.tell() == len(DATA)
    if kind != "socket":
        sink.close()  # type: ignore[attr-defined]
    client.shutdown(socket.SHUT_WR)
    head = b"head" if kind == "makefile" else b""
    assert reader.result() == head + DATA, "the peer decrypted exactly the plaintext"


@pytest.mark.parametrize("kind", ["makefile", "socketio", "socket"])
@pytest.mark.parametrize("count", [None, len(DATA) - 7])
def test_tls_source_yields_plaintext_not_ciphertext(
    kind: str, count: int | None, pair: tuple[ssl.SSLSocket, ssl.SSLSocket], tmp_path: Path
) -> None:
    client, server = pair

    def send() -> None:
        server.sendall(DATA)
        server.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    src: object = client
    if kind == "makefile":
        src = client.makefile("rb")
    elif kind == "socketio":
        src = socket.SocketIO(client, "rb")
    head = b""
    if kind == "makefile":
        head = src.read(7)  # type: ignore[attr-defined]  # the reader now holds read-ahead
    assert "TLS socket" in str(zcopy.explain(io.BytesIO(), src))
    out = tmp_path / "out"
    with open(out, "wb") as f:
        n = zcopy.copy(f, src, count)
    sender.join(30)
    want = DATA[len(head) :] if count is None else DATA[len(head) : len(head) + count]
    assert n == len(want)
    assert head + out.read_bytes() == DATA[: len(head) + n]


@pytest.mark.parametrize("kind", ["socket", "makefile"])
def test_timeout_counts_exactly_what_the_peer_got(
    kind: str, pair: tuple[ssl.SSLSocket, ssl.SSLSocket], tmp_path: Path
) -> None:
    """A stalled peer: TimeoutError, and bytes_copied is what the peer later decrypts."""
    client, server = pair
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # far more than both socket buffers hold
    client.settimeout(0.5)
    sink = _sink(kind, client)
    with open(path, "rb") as f, pytest.raises(TimeoutError) as info:
        zcopy.copy(sink, f)
    copied: int = info.value.bytes_copied  # type: ignore[attr-defined]
    assert copied > 0, "socket buffers took megabytes before the stall"
    reader = Reader(server)
    # A FIN, not a close: unread session tickets in the client would turn a close into a
    # reset that discards what the server has not read yet. A record cut short by the
    # timeout never decrypts: it was not counted.
    client.shutdown(socket.SHUT_WR)
    got = reader.result()
    assert len(got) == copied
    assert got == bytes(copied)


def _slow_reader(sock: ssl.SSLSocket, delay: float) -> Reader:
    time.sleep(delay)  # the sender fills every buffer and must wait on the socket
    return Reader(sock)


@pytest.mark.parametrize("driver", ["copy", "acopy"])
@pytest.mark.parametrize("kind", ["socket", "makefile"])
def test_nonblocking_tls_sink_waits(
    driver: str, kind: str, pair: tuple[ssl.SSLSocket, ssl.SSLSocket], src_file: Path
) -> None:
    """Buffers far smaller than the data and a reader that starts late: the copy must wait
    (SSLWantWriteError, then the fd) and still deliver every byte, decrypted, in order."""
    client, server = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    client.setblocking(False)
    sink = _sink(kind, client)
    readers: list[Reader] = []
    starter = threading.Thread(target=lambda: readers.append(_slow_reader(server, 0.3)))
    began = time.monotonic()
    starter.start()
    with open(src_file, "rb") as f:
        n = copy_by(driver, sink, f)
    # 3 MiB cannot fit in a few hundred KiB of kernel buffers: it ended after the reader began.
    assert time.monotonic() - began >= 0.3
    assert n == len(DATA)
    starter.join(10)
    if kind != "socket":
        sink.close()  # type: ignore[attr-defined]
    client.setblocking(True)
    client.shutdown(socket.SHUT_WR)
    assert readers[0].result() == DATA


@pytest.mark.parametrize("driver", ["copy", "acopy"])
@pytest.mark.parametrize("kind", ["socket", "makefile"])
def test_nonblocking_tls_source_waits(
    driver: str, kind: str, pair: tuple[ssl.SSLSocket, ssl.SSLSocket]
) -> None:
    """The source says SSLWantReadError until the peer's delayed records arrive."""
    client, server = pair

    def send() -> None:
        for i in range(0, len(DATA), 1 << 20):
            time.sleep(0.1)
            server.sendall(DATA[i : i + (1 << 20)])
        server.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    client.setblocking(False)
    src: object = client if kind == "socket" else client.makefile("rb")
    out = bytearray()

    class Sink:
        def write(self, b: memoryview) -> int:
            out.extend(b)
            return len(b)

    n = copy_by(driver, Sink(), src)
    sender.join(30)
    assert n == len(DATA)
    assert out == DATA


_TRACED = """
import socket, sys, threading, zcopy
sys.path.insert(0, {tests!r})
from pathlib import Path
from tls_util import Cert, Reader, tls_pair
cert = Cert(Path({cert!r}), Path({key!r}))
data = Path({path!r}).read_bytes()
sending, peer = tls_pair(cert)  # file -> makefile("wb") over TLS
receiving, feeder = tls_pair(cert)  # makefile("rb") over TLS -> file
Path({fds!r}).write_text(f"{{sending.fileno()}} {{receiving.fileno()}}")
reader = Reader(peer)
with open({path!r}, "rb") as f:
    w = sending.makefile("wb")
    assert zcopy.copy(w, f) == {size}
    w.close()
sending.shutdown(socket.SHUT_WR)
assert reader.result() == data
def send():
    feeder.sendall(data)
    feeder.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send); t.start()
r = receiving.makefile("rb")
with open({out!r}, "wb") as out:
    assert zcopy.copy(out, r) == {size}
t.join()
"""


def test_strace_no_kernel_route_touches_the_tls_fd(
    cert: Cert, src_file: Path, tmp_path: Path
) -> None:
    fds_path = tmp_path / "fds"
    out = tmp_path / "out"
    code = _TRACED.format(
        tests=str(Path(__file__).parent), cert=str(cert.cert), key=str(cert.key),
        fds=str(fds_path), path=str(src_file), out=str(out), size=len(DATA),
    )
    calls = run_traced(code, tmp_path, timeout=120)
    assert out.read_bytes() == DATA
    sending, receiving = (int(fd) for fd in fds_path.read_text().split())

    def on(fd: int) -> list[Call]:
        return [c for c in calls if any(n == fd and "TCP" in what for n, what in c.fds)]

    for fd in (sending, receiving):
        routes = [c for c in on(fd) if c.name in ("sendfile", "sendfile64", "splice")]
        assert not routes, f"a kernel route touched the TLS fd {fd}: {routes[:3]}"
    assert not calls_on(calls, "copy_file_range")
    sent = sum(c.ret or 0 for c in on(sending) if c.name in WRITES and c.ok)
    got = sum(c.ret or 0 for c in on(receiving) if c.name in READS and c.ok)
    # TLS adds a header and a tag to every record: what crossed the fds is ciphertext.
    assert sent > len(DATA) and got > len(DATA), (sent, got)


def test_tls_to_tls_on_the_loop_both_nonblocking(cert: Cert) -> None:
    """A TLS-terminating relay's inner step: plaintext from one TLS connection into another."""
    up_client, up_server = tls_pair(cert)
    down_client, down_server = tls_pair(cert)
    with up_client, up_server, down_client, down_server:

        def send() -> None:
            up_server.sendall(DATA)
            up_server.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        reader = Reader(down_server)
        up_client.setblocking(False)
        down_client.setblocking(False)
        n = asyncio.run(asyncio.wait_for(zcopy.acopy(down_client, up_client), 30))
        assert n == len(DATA)
        sender.join(10)
        down_client.setblocking(True)
        down_client.shutdown(socket.SHUT_WR)
        assert reader.result() == DATA


def test_strict_mode_refuses_tls_before_a_byte_moves(
    pair: tuple[ssl.SSLSocket, ssl.SSLSocket], src_file: Path
) -> None:
    client, server = pair
    with open(src_file, "rb") as f, pytest.raises(zcopy.FastPathLost, match="TLS socket") as info:
        zcopy.copy(client.makefile("wb"), f, require_zero_copy=True)
    assert getattr(info.value, "bytes_copied", 0) == 0
    client.shutdown(socket.SHUT_WR)
    assert Reader(server).result() == b"", "nothing reached the peer"
