"""One client connection: its socket, the sink that counts body bytes, its deadlines.

The connection engine an HTTP/1.1 server loop needs besides its responses, in one
place so the static server and an application server share it:

* **Deadlines that bytes never extend.** A request head must be complete within
  ``header`` seconds of the accept, of the end of the previous response (when
  the next request had already begun), or of its first byte after a keep-alive
  pause; a request body within ``body`` seconds of its head. A client trickling
  one byte (or one empty line) at a time gains nothing. An idle keep-alive
  connection gets ``keepalive`` seconds; a response must make progress every
  ``send`` seconds. ``Conn.expired`` says which deadline passed; ``sweep``
  cancels those connections' tasks.
* **Fairness.** ``Conn.take_turn`` yields to the event loop between two
  requests once the connection has run ``TURN`` seconds without waiting for
  the network (requests answered from buffered input, responses that fit in
  the socket buffer), so a pipelining client cannot keep other connections
  from running for longer than that; ``Conn.count_request``
  ends a connection after ``max_requests`` requests (nginx's
  ``keepalive_requests``).
* **Lingering close.** ``Conn.linger`` shuts the write side, then reads and
  drops what the client still sends until it closes or ``linger`` seconds
  pass. Closing with unread input would make the kernel send a RST, which
  destroys response bytes still queued for the client.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import zcopy

from .parser import Request, RequestReader

RECV_SIZE = 64 * 1024
# How long a connection may keep the event loop before it yields between requests. A
# keep-alive client that waits for each response never gets near it (no cost on the
# happy path); a pipelining flood yields every ~TURN, i.e. every dozen small requests.
TURN = 0.0005

# Connection states: which deadline applies.
HEAD = 0  # waiting for (the rest of) a request head
IDLE = 1  # keep-alive, between requests, nothing received yet
BUSY = 2  # responding
BODY = 3  # a request head is complete, its body is not
LINGER = 4  # closing: output shut down, input drained

# The inline path's answer to one request (``Conn.serve_now``): True answered, False not
# its kind (nothing sent), None begun (``Conn.pending`` holds the rest for the task).
Answer = Callable[["Conn", Request], "bool | None"]

_REASONS = {
    HEAD: "header timeout",
    IDLE: "idle",
    BODY: "request body timeout",
    LINGER: "linger",
}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long each phase of a connection may take (seconds), and how many requests it serves.

    >>> Timeouts().header, Timeouts(header=1).keepalive, Timeouts().max_requests
    (10.0, 15.0, 1000)
    """

    header: float = 10.0
    keepalive: float = 15.0
    body: float = 60.0
    send: float = 30.0
    linger: float = 5.0
    max_requests: int = 1000

    @property
    def sweep_interval(self) -> float:
        """How often ``sweep`` should run: often enough for the shortest timeout.

        >>> Timeouts().sweep_interval, Timeouts(header=0.5).sweep_interval
        (1.0, 0.25)
        """
        shortest = min(self.header, self.keepalive, self.body, self.send, self.linger or 1.0)
        return max(0.05, min(1.0, shortest / 2))


class Conn:
    """One client connection: its socket, observed sink, and deadline bookkeeping.

    >>> import asyncio, socket
    >>> a, b = socket.socketpair()
    >>> async def demo():
    ...     conn = Conn(a, "local", asyncio.get_running_loop())
    ...     b.sendall(b"GET / HTTP/1.1\\r\\n")
    ...     data = await conn.recv()
    ...     conn.close()
    ...     return data, conn.state == HEAD
    >>> asyncio.run(demo()); b.close()
    (b'GET / HTTP/1.1\\r\\n', True)
    """

    __slots__ = (
        "answer",
        "deadline",
        "early",
        "fd",
        "fed",
        "host",
        "limits",
        "loop",
        "out",
        "pending",
        "reader",
        "reading",
        "requests",
        "seen",
        "sent",
        "sock",
        "state",
        "task",
        "timed_out",
        "turn_start",
        "waiter",
    )

    def __init__(
        self,
        sock: socket.socket,
        host: str,
        loop: asyncio.AbstractEventLoop,
        limits: Timeouts = Timeouts(),
        reader: RequestReader | None = None,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.limits = limits
        self.reading = False  # our reader callback is registered with the loop
        self.waiter: asyncio.Future[None] | None = None
        self.turn_start = loop.time()  # when this task last resumed from a wait
        self.host = host
        self.reader = reader if reader is not None else RequestReader()
        self.requests = 0
        self.sent = 0  # body bytes, as the fast path reported them
        self.seen = 0  # ``sent`` at the sweeper's last look
        self.timed_out = ""
        self.task: asyncio.Task[None] | None = None
        # The inline path (``serve_now``): answers from the reader callback while the task waits.
        self.answer: Answer | None = None
        self.early: bytes | Exception | None = None  # what the inline path received for the task
        self.fed = False  # ... and already fed to the reader
        self.pending: object = None  # a response the inline path began; the server finishes it
        # The header deadline runs from the accept, whatever arrives.
        self.state = HEAD
        self.deadline = loop.time() + limits.header
        # Every body byte is counted by the copy itself, chunk by chunk.
        self.out = zcopy.observe(sock, self._count)

    def _count(self, n: int) -> None:
        self.sent += n

    # deadlines ------------------------------------------------------------------------

    def _enter(self, state: int, seconds: float) -> None:
        self.state = state
        self.deadline = self.loop.time() + seconds

    def received(self) -> None:
        """After received bytes were fed to the reader: start the clock they call for.

        Only a state change sets a deadline; more bytes in the same state never move it.
        """
        if self.state == IDLE:
            self._enter(HEAD, self.limits.header)  # even an empty line starts the head clock
        if self.state == HEAD and self.reader.in_body:
            self._enter(BODY, self.limits.body)

    def responding(self) -> None:
        """A response starts: it must make progress every ``send`` seconds."""
        self.seen = self.sent
        self._enter(BUSY, self.limits.send)

    def responded(self) -> None:
        """All ready requests are answered: wait for the next one (its head or body clock)."""
        reader = self.reader
        if reader.in_body:
            self.state, seconds = BODY, self.limits.body
        elif reader.in_head:
            self.state, seconds = HEAD, self.limits.header
        else:
            self.state, seconds = IDLE, self.limits.keepalive
        self.deadline = self.loop.time() + seconds  # (_enter inlined: once per request)

    def expired(self, now: float) -> str:
        """Why this connection is out of time at ``now``, or ``""``.

        A response that sent bytes since the last look gets a fresh ``send`` period.
        """
        if self.state == BUSY:
            if self.sent != self.seen:
                self.seen = self.sent
                self.deadline = now + self.limits.send
                return ""
            if now > self.deadline:
                return f"send stalled for {self.limits.send:g}s"
            return ""
        if now > self.deadline:
            return _REASONS[self.state]
        return ""

    # fairness -------------------------------------------------------------------------

    def count_request(self, req: Request) -> None:
        """Count a request; the last one ``max_requests`` allows is answered with close."""
        self.requests += 1
        if self.requests >= self.limits.max_requests:
            req.keep_alive = False

    async def take_turn(self) -> None:
        """Before answering a request: yield once if this task has run ``TURN`` s unsuspended.

        A pipelined request answered from buffered input, with a response that
        fit in the socket buffer, never suspends the task: without this, one
        client's flood would run to its end before any other connection.
        """
        loop = self.loop
        if loop.time() - self.turn_start >= TURN:
            await asyncio.sleep(0)
            self.turn_start = loop.time()

    # I/O ------------------------------------------------------------------------------

    def _readable(self) -> None:
        waiter = self.waiter
        if waiter is None:
            # Data came while we were busy answering: stop watching until we ask again.
            self.loop.remove_reader(self.fd)
            self.reading = False
        elif not waiter.done() and (self.answer is None or not self.serve_now(self.answer)):
            waiter.set_result(None)

    def serve_now(self, answer: Answer) -> bool:
        """The inline path: answer from the reader callback while the task waits in ``recv``.

        Receives, feeds the reader, and answers each complete request with
        ``answer`` (``True``: answered; ``False``: not its kind, nothing was
        sent; ``None``: begun, ``pending`` holds the rest) without waking the
        task, whose await costs a future and two loop iterations. Returns
        ``False`` to wake the task, which takes over from where this stopped:
        ``early`` holds what was received (``fed``: already in the reader) or
        the exception to raise in the task (a reset, an error ``answer`` met),
        requests not answered stay in ``reader.ready``. Only in ``HEAD`` or
        ``IDLE`` state with nothing queued: a lingering close, a body, a
        ``100 Continue`` are the task's. The deadlines and the fairness turn
        are the task path's: states change as there, and after ``TURN`` s the
        task gets the rest, behind the other connections' callbacks.
        """
        reader = self.reader
        if self.state > IDLE or reader.ready or reader.in_body or reader.broken:
            return False
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return True  # woken for nothing: keep waiting
        except OSError as exc:
            self.early = exc
            return False
        self.early = data
        if not data:
            return False  # EOF: the task closes
        reader.feed(data)
        self.fed = True
        ready = reader.ready
        # The clock these bytes call for (``received``) is started only when the task takes
        # over: requests answered here end with ``responded``, which starts the next one.
        if ready:
            start = self.loop.time() if len(ready) > 1 else 0.0
            while True:
                try:
                    done = answer(self, ready[0])
                except Exception as exc:  # a reset, a shrunk file, a bug: the task raises it
                    self.early = exc
                    return False
                if done is False:
                    self.received()
                    return False  # not the inline kind: the task answers it
                ready.popleft()
                if done is None:
                    self.responding()  # in flight: a shutdown waits for it, as for the task's
                    return False  # begun: the task sends the rest, then answers the others
                if not ready:
                    break
                if self.loop.time() - start >= TURN:
                    self.received()
                    return False  # a pipelined flood: the task yields, then answers the rest
            self.responded()
        else:
            self.received()
        if reader.broken or reader.continue_due:
            return False
        self.fed = False
        self.early = None
        return True

    async def recv(self) -> bytes:
        """Receive up to RECV_SIZE bytes (b"" at EOF).

        Unlike ``loop.sock_recv``, the reader stays registered between
        requests, so a keep-alive connection costs no epoll_ctl per request.
        """
        # Still registered (the inline path answered the last request from the reader
        # callback): nothing came since the callback last received, or the loop would have
        # said so (level-triggered), so the first recv is skipped: under concurrent load it
        # found nothing three times in four. After a wake-up, always recv: the callback may
        # have woken this task without receiving (a body, a request it does not answer).
        woken = not self.reading
        while True:
            if woken:
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
            woken = True
            self.turn_start = self.loop.time()  # waiting for the network gave the others a turn
            early = self.early
            if early is not None:  # the inline path received it
                self.early = None
                if isinstance(early, Exception):
                    raise early
                return early

    async def fill(self) -> bool:
        """Receive and feed the reader (and start the clock it calls for); ``False`` at EOF.

        Bytes the inline path received and fed already are not fed again.
        """
        data = await self.recv()
        if self.fed:
            self.fed = False
            return True
        if not data:
            return False
        self.reader.feed(data)
        self.received()
        return True

    async def linger(self) -> None:
        """Close gracefully: send FIN, then drop input until EOF, an error or ``linger`` s.

        The ``linger`` deadline is enforced by ``sweep`` (state ``LINGER``),
        which cancels the task; the caller closes the socket afterwards.
        """
        if self.limits.linger <= 0:
            return
        self._enter(LINGER, self.limits.linger)
        try:
            self.sock.shutdown(socket.SHUT_WR)
            while await self.recv():
                pass
        except OSError:
            pass  # reset or already gone: nothing left to protect

    def close(self) -> None:
        """Unregister from the loop, then close the socket."""
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False
        self.sock.close()


def sweep(conns: Iterable[Conn], now: float) -> None:
    """Cancel the task of every connection whose deadline passed; note why in ``timed_out``.

    >>> sweep([], 0.0)
    """
    for conn in conns:
        reason = conn.expired(now)
        if reason and conn.task is not None:
            conn.timed_out = reason
            conn.task.cancel()
