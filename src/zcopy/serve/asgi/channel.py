"""One request's ``receive`` and ``send``: the ASGI messages turned into socket I/O.

``receive`` hands over the body as it arrives (``more_body``), reads the
socket only when the app asks (that is the flow control), sends
``100 Continue`` the first time the app asks for a body the client is
holding back, and answers ``http.disconnect`` once the client is gone or the
response is complete.

``send`` writes from memory when it can and otherwise waits for the socket:
``await send(...)`` returns only when the bytes are in the kernel
(backpressure). ``http.response.pathsend`` and ``http.response.zerocopysend``
go through the core, ``zcopy.acopy(sock, zcopy.section(fd, offset, count))``,
i.e. sendfile, with the head sent ahead under MSG_MORE.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import stat
import struct
from typing import TYPE_CHECKING, Any

import zcopy

from ..conn import BODY, BUSY, Conn
from ..log import error
from ..server import _TCP_CORK, CORK_MIN
from . import response
from .reader import AsgiRequest
from .response import Framing, ResponseHead

if TYPE_CHECKING:
    from .server import AsgiServer

_MSG_MORE = getattr(socket, "MSG_MORE", 0)
_NEVER = float("inf")
DISCONNECT = {"type": "http.disconnect"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Input read for later requests while the app waits for the disconnect (an event stream):
# past either bound the socket is no longer read, so a client pipelining behind a long
# response cannot make the server parse and keep its requests without end.
MAX_PIPELINED = 1 << 20
MAX_PIPELINED_REQUESTS = 64
# pathsend opens without blocking: a FIFO swapped in for the file must not stop the loop.
_PATHSEND_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_BODY_TYPES = (bytes, bytearray, memoryview)


class ClientDisconnected(OSError):
    """``send`` on a connection whose client is gone (ASGI spec 2.4: an OSError)."""


class FileShrank(RuntimeError):
    """A file sent by pathsend/zerocopysend ended before the bytes the response promised."""


class Exchange:
    """The ASGI side of one request on a connection."""

    __slots__ = (
        "_finished",
        "_later",
        "_reading",
        "_settled",
        "body_deadline",
        "body_sent",
        "close",
        "conn",
        "continued",
        "delivered",
        "disconnected",
        "done",
        "head",
        "head_sent",
        "malformed",
        "req",
        "server",
        "started",
    )

    def __init__(self, server: AsgiServer, conn: Conn, req: AsgiRequest) -> None:
        self.server = server
        self.conn = conn
        self.req = req
        self.head: ResponseHead | None = None
        self.started = False  # http.response.start received
        self.head_sent = False
        self.done = False  # the final body message was sent
        self.body_sent = 0  # body bytes on the wire (framing excluded)
        self.close = False  # the connection cannot carry another request after this one
        self.disconnected = False
        self.continued = False  # 100 Continue sent
        self.delivered = False  # the final http.request (more_body False) was handed over
        self.malformed = False  # the body broke the protocol: the client is owed a 400
        self._later = 0  # bytes read for later requests while waiting for the disconnect
        self.body_deadline = 0.0
        self._finished: asyncio.Future[None] | None = None
        self._reading: asyncio.Lock | None = None  # made on the first socket read
        self._settled = False  # the app returned: its receive() reads the socket no more

    # receive --------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """The next ``http.request`` piece, or ``http.disconnect``."""
        req = self.req
        while True:
            if self.disconnected or self.done:
                return DISCONNECT
            if req.body:
                data = req.body[0] if len(req.body) == 1 else b"".join(req.body)
                req.body.clear()
                req.buffered = 0
                more = not req.complete
                self.delivered = not more
                return {"type": "http.request", "body": data, "more_body": more}
            if req.complete:
                if not self.delivered:
                    self.delivered = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                await self._wait_for_disconnect()
                continue
            if req.error or self.conn.reader.broken:
                # A malformed body: the app hears the end of the request; the client, still
                # there, gets the 400 the server answers when the app has not (server.py).
                self.malformed = self.disconnected = True
                continue
            if req.expect_continue and not self.continued and not self.head_sent:
                self.continued = True
                self.conn.reader.continue_due = False  # sent here, when the app asks
                await self._write(CONTINUE)
            if not await self.read_more(for_app=True):
                self.disconnected = True

    async def read_more(self, *, for_app: bool = False) -> bool:
        """Receive and parse more input within the request's body deadline; False at EOF.

        One reader at a time: an app may call ``receive()`` from two tasks, and the
        connection has one waiter slot. The app's turn may come after it returned
        (``settle``): then its ``receive()`` ends there.
        """
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:
            if for_app and self._settled:
                raise asyncio.CancelledError("the app returned: its receive() is over")
            return await self._read_more()

    async def _read_more(self) -> bool:
        conn = self.conn
        loop = self.server.loop
        assert loop is not None
        if not self.body_deadline:  # one total deadline per body: trickling never extends it
            self.body_deadline = loop.time() + self.server.limits.body
        # Our own timeout tells the app (http.disconnect); the sweeper, a little later, is
        # only the backstop that would cancel the app instead.
        conn.state, conn.deadline = BODY, self.body_deadline + 1.0
        try:
            async with asyncio.timeout_at(self.body_deadline):
                data = await conn.recv()
        except TimeoutError:
            error(f"{conn.host}: request body timeout ({self.server.limits.body:g}s)")
            return False
        except ConnectionError:
            return False
        finally:
            conn.state, conn.seen, conn.deadline = BUSY, conn.sent, _NEVER
        if not data:
            return False
        conn.reader.feed(data)
        return True

    async def _recv_locked(self) -> bytes:
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:
            if self._settled:
                raise asyncio.CancelledError("the app returned: its receive() is over")
            return await self.conn.recv()

    @property
    def reading(self) -> bool:
        """Whether the app's ``receive()`` ever had to read the socket (``settle`` matters)."""
        return self._reading is not None

    async def settle(self) -> None:
        """After the app returned: stop a ``receive()`` it left running in a task of its own.

        The connection has one waiter slot; the next request's read must not share it
        with a stray reader (whose clean-up would clear the slot under it). Strays
        queued for the lock behind it end as they get it (``_settled``), so any
        number of them costs no wait.
        """
        self._settled = True
        lock = self._reading
        if lock is None or not lock.locked():
            return
        waiter = self.conn.waiter
        if waiter is not None and not waiter.done():
            waiter.cancel()  # the stray receive() ends with CancelledError, in its own task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0), lock:
                pass

    async def _wait_for_disconnect(self) -> None:
        """Body delivered: block until the client leaves or the response completes."""
        loop = self.server.loop
        assert loop is not None
        if self._finished is None:
            self._finished = loop.create_future()
        reader = self.conn.reader
        while not (self.disconnected or self.done):
            if (
                self._later > MAX_PIPELINED
                or len(reader.ready) >= MAX_PIPELINED_REQUESTS
                or reader.broken
            ):
                await asyncio.shield(self._finished)  # no more reading: wait for the response
                return
            recv = loop.create_task(self._recv_locked())
            try:
                await asyncio.wait((recv, self._finished), return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not recv.done():
                    recv.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await recv
            if recv.cancelled():
                return
            try:
                data = recv.result()
            except OSError:
                data = b""
            if not data:
                self.disconnected = True
                return
            self._later += len(data)
            reader.feed(data)  # the next pipelined request: it waits in ``ready``

    # send -----------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Take one ``http.response.*`` message from the app."""
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            req = self.req
            self.head = response.start(
                message["status"],
                message.get("headers") or (),
                head_request=req.method == "HEAD",
                http10=req.version == "1.0",
                keep_alive=req.keep_alive and not self.server.stopping,
                date_block=self.server.dates.get(),
            )
            self.started = True
            return
        if not self.started or self.head is None:
            raise RuntimeError(f"{kind} before http.response.start")
        if self.done:
            raise RuntimeError(f"{kind} after the response was complete")
        if self.disconnected:
            raise ClientDisconnected("the client has gone")
        if kind == "http.response.body":
            await self._body(message.get("body", b""), bool(message.get("more_body", False)))
        elif kind == "http.response.pathsend":
            await self._pathsend(message["path"])
        elif kind == "http.response.zerocopysend":
            await self._zerocopysend(message)
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r}")

    def _budget(self, n: int) -> None:
        """Refuse ``n`` more body bytes past the app's own Content-Length."""
        head = self.head
        assert head is not None
        if head.framing is Framing.LENGTH:
            assert head.length is not None
            left = head.length - self.body_sent
            if n > left:
                raise RuntimeError(
                    f"response body longer than its Content-Length ({head.length})"
                )

    async def _body(self, body: bytes, more: bool) -> None:
        head = self.head
        assert head is not None
        framing = head.framing
        if type(body) is not bytes and not isinstance(body, _BODY_TYPES):
            # Checked before the head counts as sent: nothing is on the wire, so a 500.
            raise TypeError(f"http.response.body: body must be bytes, not {type(body).__name__}")
        if body and framing is not Framing.NONE:
            self._budget(len(body))  # before anything counts as sent: a 500 is still possible
        out = b"" if self.head_sent else head.data
        self.head_sent = True
        if body and framing is not Framing.NONE:
            out += response.chunk(body) if framing is Framing.CHUNKED else body
            self.body_sent += len(body)
        if not more:
            if framing is Framing.CHUNKED:
                out += response.LAST_CHUNK
            self._finish()
        if out:
            await self._write(out)

    async def _pathsend(self, path: str) -> None:
        try:
            fd = os.open(path, _PATHSEND_FLAGS)
        except OSError as exc:
            raise RuntimeError(f"pathsend: cannot open {path!r}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RuntimeError(f"pathsend: {path!r} is not a regular file")
            size = st.st_size
            head = self.head
            assert head is not None
            if head.framing is Framing.LENGTH and head.length is not None:
                promised = head.length - self.body_sent
                if size < promised:  # changed since the app sized the response
                    raise FileShrank(f"{path} has {size} bytes, the response promised {promised}")
                size = promised  # grown since: send what was promised
            await self._file(fd, 0, size, more=False, name=path)
        finally:
            os.close(fd)

    async def _zerocopysend(self, message: dict[str, Any]) -> None:
        file = message["file"]
        # A plain FileIO goes to the core as itself: the core classifies a file object
        # once (an fd number on every send), and an app that keeps its files open
        # (zcopy.asgi.FileResponse does) hands over the same object each time.
        if type(file) is io.FileIO:
            fd = file.fileno()
            source: int | io.FileIO = file
        else:
            fd = source = file if isinstance(file, int) else file.fileno()
        offset = message.get("offset")
        count = message.get("count")
        # Checked before the head counts as sent: a bad one is a 500, not a cut. (Two plain
        # tests, not a loop over the pair: this runs for every file part sent.)
        if offset is not None and (type(offset) is not int or offset < 0):
            raise ValueError(f"zerocopysend: offset must be an int >= 0, not {offset!r}")
        if count is not None and (type(count) is not int or count < 0):
            raise ValueError(f"zerocopysend: count must be an int >= 0, not {count!r}")
        # Without an offset the file's own position is used and moved, as sendfile(2) does.
        # A buffered file's position is its tell(): its fd has been read ahead of it.
        buffered = offset is None and not isinstance(file, int | io.FileIO)
        if offset is None:
            start = file.tell() if buffered else os.lseek(fd, 0, os.SEEK_CUR)
        else:
            start = offset
        if count is None:
            count = max(os.fstat(fd).st_size - start, 0)
        sent = await self._file(source, start, count, more=bool(message.get("more_body")))
        if buffered:
            file.seek(start + sent)  # also drops what the buffer read ahead
        elif offset is None:
            os.lseek(fd, start + sent, os.SEEK_SET)

    async def _file(
        self, fd: int | io.FileIO, offset: int, count: int, *, more: bool, name: str = ""
    ) -> int:
        """Send ``count`` bytes of ``fd`` from ``offset`` by sendfile, framed; return them.

        The head (or a chunk's size line) goes first under MSG_MORE, written here when
        the socket takes it whole (it nearly always does): one coroutine for the lot.
        """
        head = self.head
        assert head is not None
        framing = head.framing
        if framing is not Framing.NONE:
            self._budget(count)
        prefix = b"" if self.head_sent else head.data
        self.head_sent = True
        if framing is Framing.NONE or count == 0:
            if not more:
                self._finish()
                if framing is Framing.CHUNKED:
                    prefix += response.LAST_CHUNK
            if prefix:
                await self._write(prefix)
            return 0
        if framing is Framing.CHUNKED:
            prefix += response.chunk_size_line(count)
        if prefix:  # a multipart body's later parts have none: no empty send
            n = self._send_now(prefix, _MSG_MORE)
            if n != len(prefix):
                await self._write_rest(prefix, n)
        conn = self.conn
        sock = conn.sock
        cork = count >= CORK_MIN
        if cork:  # as the static server does, and for the same reason (see server.CORK_MIN)
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1)
        try:
            sent = await self._wait_io(zcopy.acopy(conn.out, zcopy.section(fd, offset, count)))
        finally:
            if cork:  # uncorking pushes the tail now, never after the 200 ms cork timer
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 0)
        self.body_sent += sent
        if sent < count:
            what = name or f"fd {fd if isinstance(fd, int) else fd.fileno()}"
            raise FileShrank(f"{what} ended after {sent} of {count} bytes from offset {offset}")
        tail = b"\r\n" if framing is Framing.CHUNKED else b""
        if not more:
            self._finish()
            if framing is Framing.CHUNKED:
                tail += response.LAST_CHUNK
        if tail:
            await self._write(tail)
        return sent

    def _finish(self) -> None:
        self.done = True
        head = self.head
        assert head is not None
        if not head.keep_alive:
            self.close = True
        elif head.framing is Framing.LENGTH and self.body_sent != head.length:
            self.close = True  # a short body: the client cannot find the next response
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    # socket I/O -----------------------------------------------------------------------

    async def _write(self, data: bytes, *, more: bool = False) -> None:
        """Write ``data``; wait (bounded by the send timeout's no-progress rule) if it must."""
        n = self._send_now(data, _MSG_MORE if more else 0)
        if n != len(data):
            await self._write_rest(data, n)

    def _send_now(self, data: bytes, flags: int) -> int:
        """Write what the socket takes now; how much (``ClientDisconnected`` if it is gone)."""
        try:
            return self.conn.sock.send(data, flags)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self.disconnected = True
            raise ClientDisconnected(str(exc)) from exc

    async def _write_rest(self, data: bytes, n: int) -> None:
        """The rest of ``data`` after ``n`` bytes, waiting for the socket."""
        conn = self.conn
        conn.sent += n
        await self._wait_io(zcopy.acopy(conn.out, memoryview(data)[n:]))

    async def _wait_io(self, work: Any) -> int:
        """Await a socket write with the sweeper's stalled-send rule armed meanwhile."""
        conn = self.conn
        loop = self.server.loop
        assert loop is not None
        conn.deadline = loop.time() + self.server.limits.send
        try:
            n: int = await work
        except (ConnectionError, TimeoutError) as exc:
            self.disconnected = True
            raise ClientDisconnected(str(exc)) from exc
        finally:
            conn.seen, conn.deadline = conn.sent, _NEVER  # the app's own time is not a stall
        return n

    def abort(self) -> None:
        """The response cannot be finished: make the client see a cut, never a clean end."""
        self.close = True
        with contextlib.suppress(OSError):
            self.conn.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
