"""relay(): two connected sockets, both directions at once, each by acopy (splice).

Owned by the proxy work (issue 5); this first version keeps the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from ._aio import acopy


async def _one_way(dst: socket.socket, src: socket.socket) -> int:
    n = await acopy(dst, src)
    # EOF from src: pass the half-close on, the other direction keeps flowing.
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
    return n


async def relay(a: socket.socket, b: socket.socket) -> tuple[int, int]:
    """Relay bytes between two connected non-blocking sockets until both directions end.

    Returns ``(a_to_b, b_to_a)`` byte counts. A half-close is passed on; an
    error in either direction tears both down.

    >>> import asyncio, socket, zcopy
    >>> a, x = socket.socketpair(); b, y = socket.socketpair()
    >>> for s in (a, b): s.setblocking(False)
    >>> x.sendall(b"ping"); x.shutdown(socket.SHUT_WR); y.shutdown(socket.SHUT_WR)
    >>> asyncio.run(zcopy.relay(a, b))
    (4, 0)
    >>> for s in (a, b, x, y): s.close()
    """
    up = asyncio.ensure_future(_one_way(b, a))
    down = asyncio.ensure_future(_one_way(a, b))
    try:
        a_to_b, b_to_a = await asyncio.gather(up, down)
        return a_to_b, b_to_a
    except BaseException:
        up.cancel()
        down.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        raise
