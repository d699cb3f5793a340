"""Inspect the splice pipe pool from outside the route: the kernel's count, then a clean copy."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

from conftest import tcp_pair

import zcopy
from zcopy import _pipes


def fionread(fd: int) -> int:
    """Bytes waiting to be read on fd, as the kernel counts them."""
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


def assert_pool_clean() -> None:
    """No pooled pipe holds a byte, and the next unrelated copy delivers exactly its own bytes."""
    with _pipes._lock:
        dirty = [p for p in _pipes._idle if fionread(p.r)]
    assert not dirty, f"{len(dirty)} pooled pipe(s) still hold bytes"
    c, d = tcp_pair()
    e, f = tcp_pair()
    with c, d, e, f:
        d.sendall(b"clean")
        d.shutdown(socket.SHUT_WR)
        assert zcopy.copy(e, c) == 5
        e.shutdown(socket.SHUT_WR)
        assert f.recv(100) == b"clean" and f.recv(100) == b""
