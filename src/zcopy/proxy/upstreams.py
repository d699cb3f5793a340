"""Upstream choice: round-robin, and on a refused (or timed-out) connect, the next one."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from .config import Address, format_address

log = logging.getLogger("zcopy.proxy")


class AllDown(ConnectionError):
    """No upstream accepted the connection; ``reasons`` says what each one answered."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("no upstream accepted: " + "; ".join(reasons))
        self.reasons = reasons


class RoundRobin:
    """Hands out upstreams in turn (sans-IO: the order only).

    >>> rr = RoundRobin([("a", 1), ("b", 2)])
    >>> [a[0] for a in rr.attempt_order()], [a[0] for a in rr.attempt_order()]
    (['a', 'b'], ['b', 'a'])
    """

    def __init__(self, upstreams: list[Address] | tuple[Address, ...]) -> None:
        if not upstreams:
            raise ValueError("at least one upstream is needed")
        self.upstreams = tuple(upstreams)
        self._next = 0

    def attempt_order(self) -> list[Address]:
        """This connection's order: its turn first, then the others as fallbacks."""
        n = len(self.upstreams)
        start = self._next
        self._next = (start + 1) % n
        return [self.upstreams[(start + i) % n] for i in range(n)]


async def connect(rr: RoundRobin, timeout: float) -> tuple[socket.socket, Address]:
    """Connect to the next upstream, trying the others in turn; raise ``AllDown``."""
    loop = asyncio.get_running_loop()
    reasons: list[str] = []
    for addr in rr.attempt_order():
        try:
            infos = await loop.getaddrinfo(addr[0], addr[1], type=socket.SOCK_STREAM)
        except OSError as exc:
            reasons.append(f"{format_address(addr)}: {exc}")
            continue
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), timeout)
        except (OSError, TimeoutError) as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                why = f"no answer in {timeout}s"
            else:
                why = os.strerror(exc.errno) if exc.errno else str(exc)
            reasons.append(f"{format_address(addr)}: {why}")
            log.info("upstream %s failed (%s): trying the next", format_address(addr), why)
            continue
        except BaseException:
            sock.close()
            raise
        return sock, addr
    raise AllDown(reasons)
