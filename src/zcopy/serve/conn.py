"""One client connection: its socket, the sink that counts body bytes, its timeout state."""

from __future__ import annotations

import asyncio
import socket

import zcopy

from .parser import RequestReader

RECV_SIZE = 64 * 1024

# Connection states, for the sweeper that enforces the timeouts.
HEAD = 0  # waiting for (the rest of) a request head
IDLE = 1  # keep-alive, between requests
BUSY = 2  # responding


class Conn:
    """One client connection: its socket, observed sink, and timeout bookkeeping.

    >>> import asyncio, socket
    >>> a, b = socket.socketpair()
    >>> async def demo():
    ...     conn = Conn(a, "local", asyncio.get_running_loop())
    ...     b.sendall(b"GET / HTTP/1.1\\r\\n")
    ...     data = await conn.recv()
    ...     conn.close()
    ...     return data
    >>> asyncio.run(demo()); b.close()
    b'GET / HTTP/1.1\\r\\n'
    """

    __slots__ = (
        "deadline",
        "fd",
        "host",
        "loop",
        "out",
        "reader",
        "reading",
        "seen",
        "sent",
        "sock",
        "state",
        "task",
        "timed_out",
        "waiter",
    )

    def __init__(self, sock: socket.socket, host: str, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.reading = False  # our reader callback is registered with the loop
        self.waiter: asyncio.Future[None] | None = None
        self.host = host
        self.reader = RequestReader()
        self.sent = 0  # body bytes, as the fast path reported them
        self.seen = 0  # ``sent`` at the sweeper's last look
        self.state = HEAD
        self.deadline = 0.0
        self.timed_out = ""
        self.task: asyncio.Task[None] | None = None
        # Every body byte is counted by the copy itself, chunk by chunk.
        self.out = zcopy.observe(sock, self._count)

    def _count(self, n: int) -> None:
        self.sent += n

    def _readable(self) -> None:
        waiter = self.waiter
        if waiter is None:
            # Data came while we were busy answering: stop watching until we ask again.
            self.loop.remove_reader(self.fd)
            self.reading = False
        elif not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> bytes:
        """Receive up to RECV_SIZE bytes (b"" at EOF).

        Unlike ``loop.sock_recv``, the reader stays registered between
        requests, so a keep-alive connection costs no epoll_ctl per request.
        """
        while True:
            try:
                return self.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                pass
            if not self.reading:
                self.loop.add_reader(self.fd, self._readable)
                self.reading = True
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def close(self) -> None:
        """Unregister from the loop, then close the socket."""
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False
        self.sock.close()
