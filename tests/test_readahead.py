"""Buffered read-ahead goes first; a kernel refusal after it still falls back, losing nothing.

The refusing sink is real: ``/proc/thread-self/comm`` takes write() (it renames
the thread to the first 15 bytes written) but the kernel refuses splice into
it with EINVAL. Each write replaces the name, so the name after the copy is
the last chunk written: the bytes that went out after the read-ahead.
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator

import pytest
from conftest import tcp_pair

import zcopy

# Every test here must leave no fd behind; fallbacks are expected, not warned about.
pytestmark = [
    pytest.mark.usefixtures("no_fd_leak"),
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
]

COMM = "/proc/thread-self/comm"
HEAD = b"ahead"  # what the reader's buffer holds before the copy
TAIL = b"tail-bytes"  # what is still in the kernel (socket or pipe) when it starts


@pytest.fixture
def comm() -> Iterator[int]:
    """This thread's name as a sink that refuses splice; the name is restored afterwards."""
    with open(COMM, "rb") as f:
        name = f.read()
    fd = os.open(COMM, os.O_WRONLY)
    try:
        yield fd
    finally:
        os.close(fd)
        with open(COMM, "wb") as f:
            f.write(name.rstrip(b"\n"))


def thread_name() -> bytes:
    with open(COMM, "rb") as f:
        return f.read().rstrip(b"\n")


def test_the_sink_really_refuses_splice(comm: int) -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        with pytest.raises(OSError) as info:
            os.splice(r, comm, 1)
        assert info.value.errno == 22  # EINVAL: the premise of every test below
    finally:
        os.close(r)
        os.close(w)


def socket_reader_with_readahead() -> tuple[io.BufferedReader, socket.socket, socket.socket]:
    """``sock.makefile("rb")`` holding HEAD in its buffer, TAIL still in the socket."""
    a, b = tcp_pair()
    b.sendall(HEAD)
    reader = a.makefile("rb")
    assert reader.peek(1)[: len(HEAD)] == HEAD  # read-ahead now holds HEAD
    b.sendall(TAIL)
    b.shutdown(socket.SHUT_WR)
    return reader, a, b


def pipe_reader_with_readahead() -> tuple[io.BufferedReader, int]:
    r, w = os.pipe()
    os.write(w, HEAD)
    reader = open(r, "rb")  # noqa: SIM115 - closed by the test
    assert reader.peek(1)[: len(HEAD)] == HEAD
    os.write(w, TAIL)
    return reader, w


def test_socket_makefile_refused_after_readahead_salvages_the_pipe(comm: int) -> None:
    """splice took TAIL out of the socket before comm refused: it goes out by write()."""
    reader, a, b = socket_reader_with_readahead()
    with reader, a, b:
        zcopy.reset_stats()
        assert zcopy.copy(comm, reader) == len(HEAD) + len(TAIL)
    assert thread_name() == TAIL
    s = zcopy.stats()
    assert s.fallbacks == {"splice-refused": 1}
    assert s.routes["userspace"].bytes == len(HEAD) + len(TAIL)


def test_pipe_reader_refused_after_readahead_falls_back(comm: int) -> None:
    reader, w = pipe_reader_with_readahead()
    os.close(w)
    with reader:
        assert zcopy.copy(comm, reader) == len(HEAD) + len(TAIL)
    assert thread_name() == TAIL


def test_strict_mode_after_readahead_carries_the_count(comm: int) -> None:
    """HEAD went out before the kernel refused: FastPathLost says so; TAIL stays in the pipe."""
    reader, w = pipe_reader_with_readahead()
    try:
        with reader:
            with pytest.raises(zcopy.FastPathLost) as info:
                zcopy.copy(comm, reader, require_zero_copy=True)
            assert info.value.bytes_copied == len(HEAD)
            assert thread_name() == HEAD
            os.close(w)
            w = -1
            assert reader.read() == TAIL  # nothing consumed that was not delivered
    finally:
        if w >= 0:
            os.close(w)


def test_strict_mode_socket_after_readahead_counts_the_salvage(comm: int) -> None:
    """TAIL was already in splice's pipe when comm refused: delivered, and counted."""
    reader, a, b = socket_reader_with_readahead()
    with reader, a, b:
        with pytest.raises(zcopy.FastPathLost) as info:
            zcopy.copy(comm, reader, require_zero_copy=True)
        assert info.value.bytes_copied == len(HEAD) + len(TAIL)
    assert thread_name() == TAIL


def test_strict_mode_without_readahead_raises_before_a_byte_moves(comm: int) -> None:
    r, w = os.pipe()
    try:
        os.write(w, TAIL)
        with pytest.raises(zcopy.FastPathLost) as info:
            zcopy.copy(comm, r, require_zero_copy=True)
        assert info.value.bytes_copied == 0
        assert os.read(r, 100) == TAIL
    finally:
        os.close(r)
        os.close(w)
