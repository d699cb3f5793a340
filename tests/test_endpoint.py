"""What an object resolves to, and the edges of issue 9 (finding 8) each with one defined outcome.

Trust goes by exact type: a subclass that changes the bytes is used through
its methods. One file read and written through one position is refused.
A refused copy leaves its source as it found it. explain() changes nothing.
asyncio's TransportSocket is accepted where a socket is.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import shutil
import socket
import ssl
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import Drain, tcp_pair
from tls_util import make_cert

import zcopy

pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]

DATA = os.urandom(200_000)


# -- trust by exact type --------------------------------------------------------------------


class Rot13File(io.FileIO):
    """A FileIO whose reads transform the bytes: its fd's bytes are not its bytes."""

    def readinto(self, b: Any) -> int:
        n = super().readinto(b)
        if n:
            view = memoryview(b)
            view[:n] = bytes(view[:n]).translate(_ROT)
        return n or 0


_ROT = bytes((c + 13) % 256 for c in range(256))


def test_fileio_subclass_is_read_through_its_methods(src_file: Path) -> None:
    out = io.BytesIO()
    with Rot13File(src_file, "rb") as f:
        plan = zcopy.explain(out, f)
        assert plan.route is zcopy.Route.USERSPACE
        assert "subclass of FileIO" in str(plan), str(plan)
        assert zcopy.copy(out, f) == len(DATA)
    assert out.getvalue() == DATA.translate(_ROT)


def test_buffered_reader_subclass_and_socket_subclass_are_not_trusted(src_file: Path) -> None:
    class Reader(io.BufferedReader):
        pass

    class Sock(socket.socket):
        def send(self, data: Any, flags: int = 0) -> int:
            return super().send(bytes(data).upper(), flags)

    with Reader(io.FileIO(src_file, "rb")) as f:
        assert "subclass of BufferedReader" in str(zcopy.explain(io.BytesIO(), f))
    a = Sock(socket.AF_UNIX, socket.SOCK_STREAM)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(src_file.parent / "sock"))
        listener.listen()
        a.connect(str(src_file.parent / "sock"))
        b, _ = listener.accept()
    with a, b:
        with io.FileIO(src_file) as raw:
            plan = zcopy.explain(a, raw)
        assert "socket subclass" in str(plan), str(plan)
        assert "a Sock (Unix stream socket" in str(zcopy.explain(a, b"abc"))
        drain = Drain(b)
        assert zcopy.copy(a, io.BytesIO(b"abc def")) == 7
        a.shutdown(socket.SHUT_WR)
        assert drain.result(10) == b"ABC DEF", "its own send() moved the bytes"


# -- one file, one position -----------------------------------------------------------------


def test_same_file_object_is_refused_unlike_copyfileobj(src_file: Path) -> None:
    """copyfileobj(f, f) copies the file into itself in leaps; zcopy refuses, moving nothing."""
    twin = src_file.parent / "twin"
    shutil.copy(src_file, twin)
    with open(twin, "r+b") as f:
        shutil.copyfileobj(f, f)
    assert twin.stat().st_size > len(DATA), "copyfileobj grew the file with its own bytes"
    with open(src_file, "r+b") as f:
        with pytest.raises(ValueError, match="same") as info:
            zcopy.copy(f, f)
        with pytest.raises(ValueError, match="same"):
            zcopy.explain(f, f)
        assert f.tell() == 0
        with pytest.raises(ValueError, match="same"):
            zcopy.copy(f.fileno(), f.fileno())
        with pytest.raises(ValueError, match="same"):
            zcopy.copy(f, f.raw)  # one fd behind two objects
    assert getattr(info.value, "bytes_copied", 0) == 0
    assert src_file.read_bytes() == DATA
    b = io.BytesIO(b"abc")
    with pytest.raises(ValueError, match="same"):
        zcopy.copy(b, b)


def test_same_file_through_a_section_or_a_socket_echo_is_allowed(src_file: Path) -> None:
    with open(src_file, "r+b") as f:
        f.seek(0, os.SEEK_END)
        assert zcopy.copy(f, zcopy.section(f, 0, 1000)) == 1000  # the section has its own offset
    assert src_file.read_bytes() == DATA + DATA[:1000]
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"echo")
        assert zcopy.copy(a, a, 4) == 4  # read from the peer, written back to it
        assert b.recv(10) == b"echo"


# -- a refused copy leaves its source as it found it ------------------------------------------


def test_refused_copy_leaves_a_bytesio_and_a_bytearray_writable(tmp_path: Path) -> None:
    closed = open(tmp_path / "x", "wb")  # noqa: SIM115
    closed.close()
    b = io.BytesIO(b"abc")
    arr = bytearray(b"abc")
    with pytest.raises(ValueError, match="closed") as info1:
        zcopy.copy(closed, b)
    with pytest.raises(ValueError, match="closed") as info2:
        zcopy.copy(closed, arr)
    # The tracebacks are still alive: nothing they hold may keep the buffers exported.
    assert info1.value and info2.value
    b.write(b"more")
    arr.extend(b"more")
    assert b.getvalue() == b"more" and arr == b"abcmore"


def test_bytesio_source_stays_writable_after_and_during_a_copy() -> None:
    b = io.BytesIO(b"hello")
    out = io.BytesIO()
    seen: list[int] = []

    def observer(n: int) -> None:
        b.write(b"!")  # the source is written while its bytes are being copied
        seen.append(n)

    assert zcopy.copy(out, zcopy.observe(b, observer)) == 5
    assert out.getvalue() == b"hello" and seen == [5], "the copy sent what it was given"
    # The observer wrote at the position the copy had not moved yet; then it moved by 5.
    b.write(b"world")
    assert b.getvalue() == b"!elloworld"


# -- SpooledTemporaryFile ---------------------------------------------------------------------


def test_text_spooled_file_is_refused_up_front() -> None:
    with tempfile.SpooledTemporaryFile(mode="w+") as text:
        text.write("abc")
        text.seek(0)
        with pytest.raises(TypeError, match="text-mode SpooledTemporaryFile"):
            zcopy.copy(io.BytesIO(), text)
        with pytest.raises(TypeError, match="text-mode SpooledTemporaryFile"):
            zcopy.explain(text, b"abc")


def test_explain_never_rolls_a_spooled_file_to_disk() -> None:
    with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spool:
        spool.write(b"in memory")
        spool.seek(0)
        plan = zcopy.explain(io.BytesIO(), spool)
        assert "SpooledTemporaryFile" in str(plan)
        assert not spool._rolled, "explain() rolled it over to disk"  # type: ignore[attr-defined]
        out = io.BytesIO()
        assert zcopy.copy(out, spool) == 9
        assert not spool._rolled  # type: ignore[attr-defined]
        assert out.getvalue() == b"in memory"


# -- observers, O_APPEND pipes ----------------------------------------------------------------


def test_on_bytes_is_checked_before_a_byte_moves() -> None:
    class Wrapper:
        def __zcopy__(self) -> zcopy.Handoff:
            return zcopy.Handoff(io.BytesIO(b"abc"), on_bytes=42)  # type: ignore[arg-type]

    out = io.BytesIO()
    with pytest.raises(TypeError, match="on_bytes must be callable"):
        zcopy.copy(out, Wrapper())
    assert out.getvalue() == b""


def test_o_append_pipe_sink_keeps_the_kernel_route(src_file: Path) -> None:
    """O_APPEND means nothing for a pipe (no position): sendfile and splice accept it."""
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_APPEND)
        drain = Drain(r)
        with open(src_file, "rb") as f:
            assert zcopy.explain(w, f).route is zcopy.Route.SENDFILE
            before = zcopy.stats().routes.get("sendfile")
            assert zcopy.copy(w, f) == len(DATA)
        after = zcopy.stats().routes["sendfile"]
        assert after.bytes - (before.bytes if before else 0) == len(DATA)
        os.close(w)
        w = -1
        assert drain.result(10) == DATA
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    # A file is different: sendfile and copy_file_range refuse O_APPEND there.
    with open(src_file, "ab") as appending, io.FileIO(src_file) as f:
        assert zcopy.explain(appending, f).route is zcopy.Route.USERSPACE


# -- asyncio's TransportSocket ----------------------------------------------------------------


async def _served(
    handler: Any, *, ssl_ctx: ssl.SSLContext | None = None
) -> tuple[asyncio.Server, socket.socket]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(handler, "127.0.0.1", 0, ssl=ssl_ctx)
    client = socket.create_connection(server.sockets[0].getsockname(), timeout=10)
    return server, client


async def _accepted(transports: list[asyncio.Transport]) -> asyncio.Transport:
    """The server side's transport, once connection_made has run."""
    for _ in range(1000):
        if transports:
            return transports[0]
        await asyncio.sleep(0.01)
    raise AssertionError("the server never saw the connection")


class _Keep(asyncio.Protocol):
    transports: list[asyncio.Transport]

    def __init__(self, transports: list[asyncio.Transport]) -> None:
        self.transports = transports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transports.append(transport)  # type: ignore[arg-type]


def test_transport_socket_is_a_socket_for_copy_and_acopy(src_file: Path) -> None:
    big = src_file.parent / "big"
    big.write_bytes(DATA * 40)  # 8 MB: more than the socket buffers, so acopy waits

    async def main() -> None:
        transports: list[asyncio.Transport] = []
        server, client = await _served(lambda: _Keep(transports))
        async with server:
            tsock = (await _accepted(transports)).get_extra_info("socket")
            assert type(tsock).__name__ == "TransportSocket"
            with open(big, "rb") as f:
                plan = zcopy.explain(tsock, f)
                assert plan.route is zcopy.Route.SENDFILE, str(plan)
                assert "TransportSocket" in str(plan)
                drain = Drain(client)
                assert zcopy.copy(tsock, b"head") == 4
                assert await zcopy.acopy(tsock, f) == big.stat().st_size
            transports[0].close()
            await asyncio.sleep(0)
            assert await asyncio.to_thread(drain.result, 30) == b"head" + DATA * 40
            client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_transport_socket_of_a_tls_transport_is_refused(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)

    async def main() -> None:
        transports: list[asyncio.Transport] = []
        server, raw = await _served(lambda: _Keep(transports), ssl_ctx=cert.server_context())
        client = cert.client_context().wrap_socket(
            raw, server_hostname="127.0.0.1", do_handshake_on_connect=False
        )
        async with server:
            await asyncio.to_thread(client.do_handshake)
            tsock = (await _accepted(transports)).get_extra_info("socket")
            with pytest.raises(ValueError, match="TLS transport"):
                zcopy.explain(tsock, b"plaintext")
            transports[0].close()
            client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_transport_socket_with_unsent_bytes_is_refused() -> None:
    async def main() -> None:
        transports: list[asyncio.Transport] = []
        server, client = await _served(lambda: _Keep(transports))
        async with server:
            transport = await _accepted(transports)
            transport.write(b"z" * (64 << 20))  # the client never reads: most stays buffered
            tsock = transport.get_extra_info("socket")
            with pytest.raises(ValueError, match="unsent bytes"):
                await zcopy.acopy(tsock, b"after")
            transport.abort()
            client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_blocking_reason_sees_a_transport_socket_as_nonblocking() -> None:
    a, b = tcp_pair()
    with a, b:
        from asyncio import trsock

        a.setblocking(False)
        assert asyncio.run(zcopy.acopy(trsock.TransportSocket(a), b"ok")) == 2
        assert b.recv(10) == b"ok"


class _Collect(asyncio.Protocol):
    """Keeps the transport, and what it read itself."""

    def __init__(self, transports: list[asyncio.Transport], got: bytearray) -> None:
        self.transports = transports
        self.got = got

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transports.append(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.got += data


def test_transport_socket_source_is_read_only_while_its_transport_is_paused() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transports: list[asyncio.Transport] = []
        server, client = await _served(lambda: _Collect(transports, bytearray()))
        async with server:
            transport = await _accepted(transports)
            tsock = transport.get_extra_info("socket")
            with pytest.raises(ValueError, match=r"pause_reading\(\) first"):
                zcopy.explain(io.BytesIO(), tsock)
            transport.pause_reading()
            # The bytes come later: the copy waits on the transport's fd through the loop.

            def send_late() -> None:
                client.sendall(b"late")
                client.shutdown(socket.SHUT_WR)

            loop.call_later(0.1, send_late)
            out = io.BytesIO()
            assert await zcopy.acopy(out, tsock) == 4
            assert out.getvalue() == b"late"
            transport.close()
            client.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_transport_resumed_mid_copy_stops_the_copy_with_its_count() -> None:
    """A transport that starts reading again while acopy() waits on the sink would share the
    source with it: the copy stops when it next needs the source, with the exact count."""
    payload = os.urandom(4 << 20)  # more than the sink holds: the copy waits on the sink first

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transports: list[asyncio.Transport] = []
        taken_by_transport = bytearray()
        server, client = await _served(lambda: _Collect(transports, taken_by_transport))
        sink, reader = socket.socketpair()
        async with server:
            transport = await _accepted(transports)
            transport.pause_reading()
            tsock = transport.get_extra_info("socket")
            sink.setblocking(False)
            await asyncio.to_thread(client.sendall, payload[: 1 << 20])
            feeding = asyncio.ensure_future(asyncio.to_thread(client.sendall, payload[1 << 20 :]))
            drains: list[Drain] = []

            def resume() -> None:
                transport.resume_reading()
                drains.append(Drain(reader))

            loop.call_later(0.3, resume)
            with pytest.raises(RuntimeError, match="used by transport") as caught:
                await zcopy.acopy(sink, tsock)
            await feeding
            sink.close()
            copied = caught.value.bytes_copied  # type: ignore[attr-defined]
            delivered = await asyncio.to_thread(drains[0].result, 30)
            assert copied == len(delivered) > 0
            for _ in range(500):  # the transport reads what the copy left
                if len(delivered) + len(taken_by_transport) >= len(payload):
                    break
                await asyncio.sleep(0.01)
            assert len(delivered) + len(taken_by_transport) == len(payload)
            transport.close()
            client.close()
            reader.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_closed_sockets_of_every_kind_are_refused() -> None:
    from asyncio import trsock

    plain = socket.socket()
    plain.close()
    sub = PlainSocketSubclass()
    sub.close()
    with pytest.raises(ValueError, match="TransportSocket is closed"):
        zcopy.explain(trsock.TransportSocket(plain), b"x")
    with pytest.raises(ValueError, match="socket is closed"):
        zcopy.explain(sub, b"x")


class PlainSocketSubclass(socket.socket):
    """Changes nothing, yet is not a socket.socket: used through its methods."""


# -- fds and objects of every other kind ----------------------------------------------------


def test_an_eventfd_is_an_fd_of_its_own_kind_and_is_written() -> None:
    efd = os.eventfd(0)
    try:
        plan = zcopy.explain(efd, struct.pack("=Q", 5))
        assert f"an fd of mode 0o0 (fd {efd})" in plan.dst
        assert zcopy.copy(efd, struct.pack("=Q", 5)) == 8
        assert os.eventfd_read(efd) == 5
    finally:
        os.close(efd)


def test_a_datagram_socket_takes_user_space_with_the_reason(src_file: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(
        socket.AF_INET, socket.SOCK_DGRAM
    ) as tx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(10)
        tx.connect(rx.getsockname())
        small = src_file.parent / "small"
        small.write_bytes(DATA[:1000])
        for dst in (tx, tx.fileno()):
            with open(small, "rb") as f:
                plan = zcopy.explain(dst, f)
                assert plan.route is zcopy.Route.USERSPACE
                assert "not a stream socket" in str(plan)
                assert zcopy.copy(dst, f) == 1000
            assert rx.recv(65536) == DATA[:1000]  # one datagram each


def test_buffered_reader_over_something_else_is_read_through_itself() -> None:
    reader = io.BufferedReader(io.BytesIO(DATA))
    plan = zcopy.explain(io.BytesIO(), reader)
    assert "BufferedReader is over a BytesIO" in str(plan)
    out = io.BytesIO()
    assert zcopy.copy(out, reader) == len(DATA)
    assert out.getvalue() == DATA


def test_values_that_are_no_endpoint_are_refused() -> None:
    with pytest.raises(TypeError, match="not bool"):
        zcopy.explain(io.BytesIO(), True)
    with pytest.raises(TypeError, match="dst bytearray has no write"):
        zcopy.explain(bytearray(10), b"x")


class NoFd:
    """A sink whose fileno() says -1, as some wrappers do when they have none."""

    def __init__(self) -> None:
        self.got = bytearray()

    def fileno(self) -> int:
        return -1

    def write(self, data: memoryview) -> int:
        self.got += data
        return len(data)


class NotAHandoff:
    def __zcopy__(self) -> object:
        return "not a Handoff"


def test_acopy_refuses_what_copy_refuses_and_takes_a_no_fd_object_at_its_word() -> None:
    async def main() -> None:
        sink = NoFd()
        assert await zcopy.acopy(sink, b"word") == 4
        assert sink.got == b"word"
        with pytest.raises(TypeError, match=r"expected zcopy\.Handoff"):
            await zcopy.acopy(io.BytesIO(), NotAHandoff())
        with pytest.raises(TypeError, match="not bool"):
            await zcopy.acopy(io.BytesIO(), False)
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        with pytest.raises(ValueError, match="closed or invalid"):
            await zcopy.acopy(io.BytesIO(), r)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_fileio_over_a_socket_fd_is_that_socket(src_file: Path) -> None:
    a, b = tcp_pair()
    with a, b, open(a.fileno(), "wb", buffering=0, closefd=False) as raw, open(src_file, "rb") as f:
        assert type(raw) is io.FileIO
        plan = zcopy.explain(raw, f)
        assert plan.route is zcopy.Route.SENDFILE and "socket" in plan.dst
        drain = Drain(b)
        assert zcopy.copy(raw, f) == len(DATA)
        a.shutdown(socket.SHUT_WR)
        assert drain.result(30) == DATA


def test_acopy_refuses_wrappers_nested_past_the_limit() -> None:
    deep: object = b"x"
    for _ in range(40):
        deep = zcopy.observe(deep, lambda n: None)
    with pytest.raises(ValueError, match="nested __zcopy__ wrappers"):
        asyncio.run(asyncio.wait_for(zcopy.acopy(io.BytesIO(), deep), 30))
