"""Sources and sinks zcopy can only reach through their methods, and what it believes of them.

A TLS socket, a socket subclass, a ``GzipFile``, anyone's file-like object:
their bytes are what their ``recv_into``/``readinto``/``send``/``write`` say,
never their fd's. Every answer is checked before it is believed (a count is
an int within what was offered), so an object that lies gets a clear
``TypeError``/``ValueError`` (``copy()`` adds ``bytes_copied``) instead of
stale bytes on the wire, an inflated count or a loop that never ends. When
one says it would block (``BlockingIOError``, ``None``, ``SSLWantReadError``,
``SSLWantWriteError``), the copy waits on the socket's fd like any other
(``Wait``), if there is one to wait on.
"""

from __future__ import annotations

import errno
import io
import socket
import sys
from collections.abc import Generator
from typing import Any

from . import _transfer
from ._endpoint import Endpoint

# The exact types whose readinto1() makes at most one read of the object below, so
# a copy never blocks filling the buffer while some bytes are already in hand.
_ONE_READ = frozenset({io.BufferedReader, io.BufferedRandom})


def read_some(src: Endpoint, view: memoryview) -> int | _transfer.Wait:
    """One read from an object source into ``view``: the count, or the Wait it needs first."""
    obj: Any = src.obj
    try:
        if isinstance(obj, socket.socket):  # a TLS socket or a socket subclass
            n = obj.recv_into(view)
        elif type(obj) in _ONE_READ:
            n = obj.readinto1(view)
        else:
            n = obj.readinto(view)
    except OSError as exc:
        return _wait_for(src, exc, write=False)
    if type(n) is int and 0 <= n <= len(view):
        return n
    if n is None:  # the io convention for "would block"
        return _would_block(src, write=False, call="readinto")
    return _count(src, "readinto", n, len(view))


def write_some(t: _transfer.Transfer, part: memoryview) -> Generator[_transfer.Wait, None, int]:
    """Write some of ``part`` to an object sink, waiting as it asks; account for what it took.

    Returns the bytes taken (> 0), already counted in ``t``.
    """
    dst = t.dst
    obj: Any = dst.obj
    if isinstance(obj, socket.socket):
        # A TLS socket gets one record per send: SSL_write of more either completes
        # whole or raises, and a timeout would then lose the count of what went out.
        if dst.chunk and len(part) > dst.chunk:
            part = part[: dst.chunk]
        while True:
            try:
                # Stored from C, as the fd routes do: a signal handler that raises
                # right after send() returned cannot lose what the peer was sent.
                t.box.extend(map(obj.send, (part,)))
            except OSError as exc:
                yield _wait_for(dst, exc, write=True)
                continue
            n = t.box[-1]
            if not (type(n) is int and 0 < n <= len(part)):
                t.box.pop()  # never accounted for as it stands
                t.box.append(_accepted(t, _count(dst, "send", n, len(part))))
            return t.settle()
    while True:
        try:
            r = obj.write(part)
        except OSError as exc:
            # A buffered writer that would block may already have taken part of the data
            # (into the fd or its own buffer): those bytes are the sink's, and a caller that
            # resumes from bytes_copied must not send them twice.
            taken = getattr(exc, "characters_written", 0)
            if isinstance(exc, BlockingIOError) and type(taken) is int and 0 < taken <= len(part):
                t.advance(taken)
                return taken
            yield _wait_for(dst, exc, write=True)
            continue  # pragma: no cover - only a socket sink has a wait_fd (branch above)
        if type(r) is int and 0 <= r <= len(part):
            n = r
        elif r is None:
            if isinstance(obj, io.RawIOBase):  # a raw file's None: nothing written, would block
                yield _would_block(dst, write=True, call="write")
                continue  # pragma: no cover - raised above: only a socket sink has a wait_fd
            # Any other write() that returns nothing took it all (shutil.copyfileobj and
            # file-likes such as HTTP response objects work that way).
            n = len(part)
        else:
            n = _count(dst, "write", r, len(part))
        t.advance(_accepted(t, n))
        return n


def _accepted(t: _transfer.Transfer, n: int) -> int:
    if n <= 0:
        raise OSError(errno.EIO, f"dst {t.dst.label} accepted 0 bytes")
    return n


def trusted_reader(src: Endpoint) -> bool:
    """Whether the object source is stdlib TLS, known to write every byte it counts.

    Any other object gets a buffer of its own, never a pooled one: a readinto()
    that counts bytes it never wrote would otherwise send another copy's data.
    """
    obj: Any = src.obj
    if type(obj) in _ONE_READ:
        raw: Any = obj.raw
        obj = getattr(raw, "_sock", None) if type(raw) is socket.SocketIO else raw
    ssl = sys.modules.get("ssl")
    return ssl is not None and type(obj) is ssl.SSLSocket


def _wait_for(ep: Endpoint, exc: OSError, write: bool) -> _transfer.Wait:
    """The Wait a would-block error asks for, or the error itself if it is a real one."""
    if isinstance(exc, BlockingIOError):
        return _would_block(ep, write, call="write" if write else "read", exc=exc)
    ssl = sys.modules.get("ssl")
    if ssl is not None and ep.wait_fd >= 0:
        # TLS may need to read to write (a key update) and write to read: wait on what it says.
        if isinstance(exc, ssl.SSLWantReadError):
            return _wait(ep, write=False)
        if isinstance(exc, ssl.SSLWantWriteError):
            return _wait(ep, write=True)
    raise exc


def _would_block(
    ep: Endpoint, write: bool, call: str, exc: BaseException | None = None
) -> _transfer.Wait:
    if ep.wait_fd >= 0:
        return _wait(ep, write)
    raise BlockingIOError(
        f"{ep.role} {ep.label}: {call}() would block and there is no fd zcopy could wait on"
    ) from exc


def _wait(ep: Endpoint, write: bool) -> _transfer.Wait:
    what = "to accept data" if write else "to have data"
    # A socket with a timeout waits inside its own calls; only a non-blocking one gets here.
    return _transfer.Wait(ep.wait_fd, write, ep.timeout or None, f"{ep.role} {ep.label} {what}")


def _count(ep: Endpoint, call: str, got: object, given: int) -> int:
    """A count off the fast path: an int subclass is taken; anything untrue is refused."""
    room = "room for" if call == "readinto" else "given"
    if not isinstance(got, int) or isinstance(got, bool):
        raise TypeError(
            f"{ep.role} {ep.label}: {call}() returned {type(got).__name__}, "
            f"not an int byte count"
        )
    if not 0 <= got <= given:
        raise ValueError(
            f"{ep.role} {ep.label}: {call}() returned {got} with {room} {given} bytes "
            f"(a count must be 0..{given})"
        )
    return int(got)
