"""The handler shapes the bench compares: one function per mode, all with the same signature.

A handler gets the accepted connection, the file's path and its size, sends
the whole file, and returns the bytes it sent. The proxy modes have no handler
of their own: a ``raw`` server sits upstream and the measured process is
``zcopy proxy``.
"""

from __future__ import annotations

import mmap
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import zcopy

Handler = Callable[[socket.socket, str, int], int]


class JustReader:
    """A wrapper with nothing but ``read()``: the Go post's ``justReader``, zcopy's fallback case.

    >>> import io
    >>> JustReader(io.BytesIO(b"abc")).read(2)
    b'ab'
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, size: int = -1) -> bytes:
        """Read like the file underneath; no ``fileno()``, no ``readinto()``, no protocol."""
        return self._f.read(size)


class JustReadinto:
    """A wrapper with nothing but ``readinto()``: zcopy's user-space loop with its reused buffer.

    >>> import io
    >>> buf = bytearray(2); JustReadinto(io.BytesIO(b"abc")).readinto(buf), bytes(buf)
    (2, b'ab')
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def readinto(self, buf: memoryview | bytearray) -> int:
        """Read straight into the caller's buffer (one read(2) on an unbuffered file)."""
        n = self._f.readinto(buf)  # type: ignore[attr-defined]
        return int(n or 0)


def raw(conn: socket.socket, path: str, size: int) -> int:
    with open(path, "rb") as f:
        return zcopy.copy(conn, f)


def wrapped(conn: socket.socket, path: str, size: int) -> int:
    with open(path, "rb") as f:
        return zcopy.copy(conn, JustReader(f))


def limit(conn: socket.socket, path: str, size: int) -> int:
    with open(path, "rb") as f:
        return zcopy.copy(conn, zcopy.section(f, 0, size))


def observed(conn: socket.socket, path: str, size: int) -> int:
    counted = [0]

    def count(n: int) -> None:  # what the Go post's logging middleware did, minus the log
        counted[0] += n

    with open(path, "rb") as f:
        sent = zcopy.copy(conn, zcopy.observe(f, count))
    if counted[0] != sent:
        raise AssertionError(f"observer counted {counted[0]} bytes, copy sent {sent}")
    return sent


def stdlib(conn: socket.socket, path: str, size: int) -> int:
    with open(path, "rb") as f:
        return conn.sendfile(f)


def naive(conn: socket.socket, path: str, size: int) -> int:
    with open(path, "rb") as f, conn.makefile("wb") as out:
        shutil.copyfileobj(f, out)
        return f.tell()


def mapped(conn: socket.socket, path: str, size: int) -> int:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return zcopy.copy(conn, m)


def readinto(conn: socket.socket, path: str, size: int, buffer_size: int | None = None) -> int:
    # buffering=0: each readinto() is one read(2) into zcopy's buffer, no hidden copy.
    with open(path, "rb", buffering=0) as f:
        return zcopy.copy(conn, JustReadinto(f), buffer_size=buffer_size)


@dataclass(frozen=True, slots=True)
class Mode:
    """A mode's name, what it runs, and whether it is a proxy in front of a ``raw`` server."""

    name: str
    code: str
    handler: Handler | None = None
    proxy_splice: bool | None = None  # None: a plain server; True/False: zcopy proxy (--no-splice)

    @property
    def is_proxy(self) -> bool:
        """Whether the measured process is ``zcopy proxy``.

        >>> MODES["proxy-copy"].is_proxy, MODES["raw"].is_proxy
        (True, False)
        """
        return self.proxy_splice is not None


# The modes of `zcopy bench`, in the order of its table.
MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("raw", "zcopy.copy(conn, f)", raw),
        Mode("wrapped", "zcopy.copy(conn, JustReader(f))", wrapped),
        Mode("limit", "zcopy.copy(conn, zcopy.section(f, 0, size))", limit),
        Mode("observed", "zcopy.copy(conn, zcopy.observe(f, count))", observed),
        Mode("stdlib", "conn.sendfile(f)", stdlib),
        Mode("naive", 'shutil.copyfileobj(f, conn.makefile("wb"))', naive),
        Mode("mmap", "zcopy.copy(conn, mmap.mmap(f.fileno(), 0))", mapped),
        Mode("proxy-splice", "zcopy proxy -> raw server", proxy_splice=True),
        Mode("proxy-copy", "zcopy proxy --no-splice -> raw server", proxy_splice=False),
    )
}

# Extra server shapes for benchmarks/core_copy.py (not in `zcopy bench`'s table).
EXTRA_MODES: dict[str, Mode] = {
    "readinto": Mode("readinto", "zcopy.copy(conn, JustReadinto(f))", readinto),
}


def handler(name: str) -> Handler:
    """The server handler of a mode, bench or extra.

    >>> handler("raw").__name__
    'raw'
    """
    mode = MODES.get(name) or EXTRA_MODES.get(name)
    if mode is None or mode.handler is None:
        raise KeyError(f"mode {name!r} has no server handler")
    return mode.handler
