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


def assert_pool_sound() -> None:
    """Every pooled pipe is open, pooled once, and holds no byte (the kernel's count)."""
    with _pipes._lock:
        idle = list(_pipes._idle)
    assert all(p.r >= 0 for p in idle), "a closed pipe is in the pool"
    assert len({id(p) for p in idle}) == len(idle), "a pipe is pooled twice"
    dirty = [p for p in idle if fionread(p.r)]
    assert not dirty, f"{len(dirty)} pooled pipe(s) still hold bytes"


def assert_pool_clean() -> None:
    """The pool is sound, and the next unrelated copy delivers exactly its own bytes."""
    assert_pool_sound()
    c, d = tcp_pair()
    e, f = tcp_pair()
    with c, d, e, f:
        d.sendall(b"clean")
        d.shutdown(socket.SHUT_WR)
        assert zcopy.copy(e, c) == 5
        e.shutdown(socket.SHUT_WR)
        assert f.recv(100) == b"clean" and f.recv(100) == b""
