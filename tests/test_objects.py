"""Sources and sinks reached only through their methods (``_objects``): waits, real errors, counts.

A socket subclass is used through its own ``recv_into``/``send``, and its fd
is only waited on: a non-blocking one that says EAGAIN is waited for, both
ways. An object with no fd to wait on that says it would block gets a clear
``BlockingIOError`` carrying what went out. A real error from an object
(ENOSPC from ``/dev/full``) is the caller's, with the count. Every socket
here is real; the peers are real threads reading late or writing in pieces.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import Drain, copy_by
from tls_util import make_cert, read_all, tls_pair

import zcopy

pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]

DATA = os.urandom(4 << 20)  # more than a Unix socket pair buffers: a sender must wait


class PlainSubclass(socket.socket):
    """A socket subclass that changes nothing: zcopy still may not trust it with its fd."""


def subclassed_pair() -> tuple[PlainSubclass, socket.socket]:
    a, b = socket.socketpair()
    return PlainSubclass(a.family, a.type, fileno=a.detach()), b


def test_nonblocking_socket_subclass_source_is_waited_on() -> None:
    sub, peer = subclassed_pair()
    with sub, peer:
        sub.setblocking(False)
        plan = zcopy.explain(io.BytesIO(), sub)
        assert plan.route is zcopy.Route.USERSPACE and "PlainSubclass" in str(plan)

        def trickle() -> None:
            for i in range(0, 30_000, 10_000):
                time.sleep(0.05)  # each piece arrives after the copy found the socket empty
                peer.sendall(DATA[i : i + 10_000])
            peer.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        out = io.BytesIO()
        assert zcopy.copy(out, sub) == 30_000
        sender.join(10)
    assert out.getvalue() == DATA[:30_000]


@pytest.mark.parametrize("driver", ["copy", "acopy"])
def test_nonblocking_socket_subclass_sink_waits_for_a_late_reader(driver: str) -> None:
    sub, peer = subclassed_pair()
    with sub, peer:
        sub.setblocking(False)
        # The reader starts late: the sink's buffer fills and send() says EAGAIN first.
        late = threading.Timer(0.2, lambda: readers.append(Drain(peer)))
        readers: list[Drain] = []
        late.start()
        n = copy_by(driver, sub, DATA)
        assert n == len(DATA)
        late.join(10)
        sub.shutdown(socket.SHUT_WR)
        assert readers[0].result(30) == DATA


class SendWriter:
    """A file-like sink over a non-blocking socket, with no fileno(): no fd zcopy could wait on."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: memoryview) -> int:
        return self.sock.send(data)


def test_object_that_would_block_without_an_fd_raises_with_the_count() -> None:
    a, peer = socket.socketpair()
    with a, peer:
        a.setblocking(False)
        with pytest.raises(BlockingIOError, match="no fd zcopy could wait on") as caught:
            zcopy.copy(SendWriter(a), DATA)
        moved = caught.value.bytes_copied  # type: ignore[attr-defined]
        assert 0 < moved < len(DATA)
        a.shutdown(socket.SHUT_WR)
        peer.settimeout(10)
        assert Drain(peer).result(30) == DATA[:moved]  # counted = what the peer can read


class Journal(io.BufferedWriter):
    """A BufferedWriter subclass: written through its own write(), never its fd."""


def test_real_error_from_an_object_sink_is_raised_with_the_count(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(DATA[:100_000])
    with open("/dev/full", "wb", buffering=0) as raw, open(tmp_path / "src", "rb") as src:
        sink = Journal(raw, buffer_size=4096)
        assert "Journal is a subclass of BufferedWriter" in str(zcopy.explain(sink, src))
        with pytest.raises(OSError) as caught:
            zcopy.copy(sink, src)
        assert caught.value.errno == errno.ENOSPC
        assert caught.value.bytes_copied == 0  # type: ignore[attr-defined]
        sink.close()  # nothing was left in its buffer to flush


class JustReadinto:
    """A source with readinto() only; ``count_type`` is the type of the count it returns."""

    def __init__(self, data: bytes, count_type: type[int] = int) -> None:
        self.src = io.BytesIO(data)
        self.count_type = count_type

    def readinto(self, buf: memoryview) -> int:
        return self.count_type(self.src.readinto(buf))


class ByteCount(int):
    """An int subclass, as some libraries return for counts."""


def test_int_subclass_count_is_taken_at_its_value() -> None:
    out = io.BytesIO()
    assert zcopy.copy(out, JustReadinto(DATA[:70_000], ByteCount)) == 70_000
    assert out.getvalue() == DATA[:70_000]


def test_nonblocking_tls_sink_waits_when_the_kernel_buffers_are_full(tmp_path: Path) -> None:
    """Small socket buffers and a late reader: send() says SSLWantWriteError, the copy waits
    for the fd to be writable, and the peer gets every byte, decrypted, in order."""
    client, server = tls_pair(make_cert(tmp_path))
    with client, server:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 10)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
        client.setblocking(False)
        got: list[bytes] = []
        late = threading.Timer(0.3, read_all, (server, got))
        late.start()
        assert zcopy.copy(client, DATA[: 1 << 20]) == 1 << 20
        client.setblocking(True)
        client.shutdown(socket.SHUT_WR)
        late.join(30)
        assert b"".join(got) == DATA[: 1 << 20]


class _SubWriter(io.BufferedWriter):
    """A BufferedWriter subclass: reached through its write(), which may take part and block."""


def test_a_buffered_writer_that_takes_part_then_would_block_counts_what_it_took() -> None:
    # The writer puts 64 KiB into the pipe and 8 KiB into its own buffer, then raises
    # BlockingIOError(characters_written=...): those bytes are the sink's, so a caller
    # resuming from bytes_copied must not send them again.
    r, w = os.pipe()
    os.set_blocking(w, False)
    sink = _SubWriter(io.FileIO(w, "wb"), buffer_size=8192)
    data = os.urandom(200_000)
    try:
        with pytest.raises(BlockingIOError) as info:
            zcopy.copy(sink, data)
        os.set_blocking(r, False)
        in_pipe = b""
        with pytest.raises(BlockingIOError):
            while chunk := os.read(r, 1 << 20):
                in_pipe += chunk
        copied = info.value.bytes_copied  # type: ignore[attr-defined]
        assert copied >= len(in_pipe) > 0
        assert copied == len(in_pipe) + 8192  # the rest sits in the writer's own buffer
        assert in_pipe == data[: len(in_pipe)]
    finally:
        with contextlib.suppress(BlockingIOError):
            sink.close()
        os.close(r)
