"""The thin asyncio loop: accept, one task per connection, respond in order, time out.

Everything protocol-shaped is decided by the sans-IO modules (``parser``,
``paths``, ``conditional``, ``ranges``, ``multipart``, ``headers``); this
module only moves bytes. A response head leaves with ``MSG_MORE`` when a body
follows, so head and body share packets; the body (each part of a multi-range
body, too) goes through ``zcopy.acopy(sock, zcopy.section(fd, offset, length))``,
i.e. sendfile. Its last call carries no MORE flag, and a long body's TCP_CORK is
lifted right after its last byte, so nothing stays corked. One exception, for
speed: a kept-alive 200 of a file up to ``Config.small_body`` bytes answered
inline goes as head and body in one ``sendmsg``, the body read by one ``pread``
at that request, because the kernel's fixed cost of a sendfile call is more
than copying so few bytes (docs/serve.md, "Small bodies").
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass

import zcopy

from ..daemon import listen  # noqa: F401  (every zcopy server listens the same way)
from . import headers, listing
from .conn import BODY, HEAD, IDLE, Conn, Timeouts, sweep
from .files import Handle, Meta, MetaCache, OpenFiles, Refused, sidecar_path
from .log import AccessLog, error
from .parser import Request
from .paths import BadTarget, Target, parse_target
from .plan import HTML, plan_file

_MSG_MORE = getattr(socket, "MSG_MORE", 0)
_TCP_CORK = getattr(socket, "TCP_CORK", 3)
CORK_MIN = 256 * 1024  # bodies at least this long are sent corked
# Inline 200s of files up to this size go as one sendmsg of the head and the body, read at that
# request: measured, that is cheaper than a MSG_MORE head and a sendfile through acopy up to
# about here (8 KiB: 56 against 68 us per request), even at 16 KiB (docs/serve.md, "Small bodies").
SMALL_BODY = 8 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
REFUSED_LINGERING = 256  # refused (over-cap) sockets given time to read their 503
STATS_PATH = ("_zcopy", "stats")
# Request fields that leave a plain 200 unchanged: anything else (Range, a precondition)
# goes to the planner. Accept-Encoding matters only for a file with sidecars.
_PLAIN = frozenset({"host", "user-agent", "referer", "accept-encoding"})


@dataclass(slots=True)
class Config:
    """What ``zcopy serve`` was asked to do.

    >>> Config("/srv/www", listing=False).send_timeout
    30.0
    """

    root: str
    listing: bool = True
    follow_symlinks: bool = False
    dotfiles: bool = False
    precompressed: bool = True
    stats: bool = False
    header_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    send_timeout: float = 30.0
    shutdown_timeout: float = 10.0
    max_connections: int = 1024
    access_log: str | None = None
    body_timeout: float = 60.0
    linger_timeout: float = 5.0
    max_requests: int = 1000
    small_body: int = SMALL_BODY  # 0: every body by sendfile

    def timeouts(self) -> Timeouts:
        """The connection engine's deadlines and request cap.

        >>> Config(".", header_timeout=1).timeouts().header
        1
        """
        return Timeouts(
            header=self.header_timeout,
            keepalive=self.keepalive_timeout,
            body=self.body_timeout,
            send=self.send_timeout,
            linger=self.linger_timeout,
            max_requests=self.max_requests,
        )


class _Close(Exception):
    """End the connection after this response (a short body, a vanished client)."""


@dataclass(slots=True)
class _Rest:
    """What the inline path began and could not send without waiting: the task sends it.

    The handle keeps the fd open (one reference) until the rest is sent or dropped.
    """

    req: Request
    status: int
    head: bytes  # head bytes not sent yet
    handle: Handle
    offset: int  # file bytes [offset, end) not sent yet
    end: int
    path: str
    logged_from: int  # conn.sent when the body began
    tail: bytes = b""  # the rest of a small body read into memory, sent after ``head``


class Server:
    """One process's server: a listening socket and the connections it accepted.

    >>> server = Server(Config("."), listen("127.0.0.1", 0))
    >>> server.listener.getsockname()[0]
    '127.0.0.1'
    >>> server.listener.close()

    ``asyncio.run(server.serve())`` then serves until SIGTERM/SIGINT.
    """

    def __init__(
        self,
        config: Config,
        listener: socket.socket,
        on_ready: Callable[[], object] | None = None,
    ) -> None:
        self.on_ready = on_ready
        self.cfg = config
        self.root = config.root
        self.listener = listener
        self.conns: set[Conn] = set()
        self.metas = MetaCache()
        # request-target -> (parsed, filesystem path): the same few targets come again and again
        # (the third item: a plain file path, which the inline path may answer)
        self._targets: dict[bytes, tuple[Target, str, bool]] = {}
        self.files = OpenFiles(
            config.root, follow_symlinks=config.follow_symlinks, dotfiles=config.dotfiles
        )
        self.limits = config.timeouts()
        self._accept_errors = 0
        self._refused: set[socket.socket] = set()  # refused sockets waiting to be closed
        self.dates = headers.DateBlock()
        self.log = AccessLog(config.access_log)
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        # A subclass that answers requests its own way never gets the inline path.
        self._inline = type(self)._respond is Server._respond

    # lifecycle ------------------------------------------------------------------------

    async def serve(self) -> None:
        """Accept until told to stop, then drain in-flight responses (bounded)."""
        loop = self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.listener.setblocking(False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        if self.cfg.stats:
            loop.add_signal_handler(signal.SIGUSR1, self.print_stats)
        sweeper = loop.create_task(self._sweep())
        acceptor = loop.create_task(self._accept())
        if self.on_ready is not None:
            self.on_ready()
        await self._stopped.wait()
        acceptor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acceptor
        self.listener.close()
        for conn in list(self.conns):
            if self._nothing_in_flight(conn) and conn.task is not None:
                # Nothing in flight: close, lingering (a request already sent gets a FIN, not a
                # RST). Responses in flight finish first; lingering closes go on.
                conn.timed_out = "shutdown"
                conn.task.cancel()
        tasks = [c.task for c in self.conns if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.cfg.shutdown_timeout)
            for t in pending:
                t.cancel()
            if pending:
                error(f"shutdown: {len(pending)} transfer(s) still running were cut off")
                await asyncio.wait(pending, timeout=5)
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        for sock in self._refused:
            sock.close()
        self._refused.clear()
        self.files.clear()
        self.log.close()
        if self.cfg.stats:
            self.print_stats()

    def _nothing_in_flight(self, conn: Conn) -> bool:
        """Whether a shutdown may close ``conn`` at once: no response is under way.

        Waiting for a request (its head, or a body the server only discards) is nothing.
        """
        return conn.state in (IDLE, HEAD, BODY)

    def stop(self) -> None:
        """Stop accepting; answer what is in flight with ``Connection: close``."""
        if not self.stopping:
            self.stopping = True
            if self._stopped is not None:
                self._stopped.set()

    def stats_dict(self) -> dict[str, object]:
        """The ``--stats`` snapshot: zcopy's per-route counters for this process."""
        snap = zcopy.stats()
        return {
            "pid": os.getpid(),
            "connections": len(self.conns),
            "zero_copy_bytes": snap.zero_copy_bytes,
            **snap.as_dict(),
        }

    def print_stats(self) -> None:
        """Print per-route byte counts on stderr (at shutdown and on SIGUSR1)."""
        routes = zcopy.stats().routes
        parts = [f"{name} {r.bytes} bytes in {r.calls} copies" for name, r in routes.items()]
        error(f"stats (pid {os.getpid()}): " + ("; ".join(parts) or "nothing sent yet"))

    async def _sweep(self) -> None:
        """Enforce the connection deadlines (``conn.sweep``); once a second purge and flush."""
        loop = self.loop
        assert loop is not None
        interval = self.limits.sweep_interval
        last = loop.time()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            sweep(list(self.conns), now)
            if now - last >= 1.0:
                last = now
                self.files.purge(now)
                self.log.flush()

    async def _accept(self) -> None:
        loop = self.loop
        assert loop is not None
        pause = 0.0
        while True:
            try:
                sock, addr = await loop.sock_accept(self.listener)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:
                # EMFILE, ENFILE, ENOBUFS...: the connection stays in the backlog and the
                # listener stays readable; retrying at once would spin. Back off (up to 1 s)
                # and say so once per episode, not once per retry.
                if not pause:
                    error(f"accept failed: {exc}; backing off until it succeeds")
                self._accept_errors += 1
                pause = min(1.0, (pause or 0.025) * 2)
                await asyncio.sleep(pause)
                continue
            if pause:
                error(f"accept works again after {self._accept_errors} failed attempt(s)")
                pause, self._accept_errors = 0.0, 0
            sock.setblocking(False)
            if len(self.conns) >= self.cfg.max_connections:
                self._refuse(sock)
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            host = addr[0] if isinstance(addr, tuple) else "-"
            conn = Conn(sock, host, loop, self.limits)  # the header deadline starts now
            if self._inline:
                conn.answer = self._answer_now
            self.conns.add(conn)
            conn.task = loop.create_task(self._run(conn))

    def _refuse(self, sock: socket.socket) -> None:
        """Over the connection cap: a best-effort 503 and close, without reading."""
        body = headers.simple_body(503, "too many connections")
        head = headers.head(
            503,
            self.dates.get(),
            b"Content-Type: text/html; charset=utf-8\r\nRetry-After: 1\r\n",
            len(body),
            b"Connection: close\r\n",
        )
        with contextlib.suppress(OSError):
            sock.send(head + body)
            sock.shutdown(socket.SHUT_WR)
        # Closing now, with the request unread, would send a RST that can destroy the 503
        # before the client reads it: let the FIN go first, close a little later (at most
        # 1 s). A flood of refused connections must not pile up fds: beyond
        # REFUSED_LINGERING waiting sockets, close at once.
        if len(self._refused) >= REFUSED_LINGERING:
            sock.close()
        else:
            assert self.loop is not None
            self._refused.add(sock)
            self.loop.call_later(min(max(self.limits.linger, 0.1), 1.0), self._closed, sock)
        self.log.write("-", "-", 503, len(body), None, None)

    def _closed(self, sock: socket.socket) -> None:
        self._refused.discard(sock)
        sock.close()

    # one connection -------------------------------------------------------------------

    async def _run(self, conn: Conn) -> None:
        """Serve one connection, then close it: lingering, unless it failed or timed out."""
        linger = False
        try:
            linger = await self._exchange(conn)
        except asyncio.CancelledError:
            reason = conn.timed_out
            linger = reason == "shutdown"
            if reason and reason not in ("idle", "shutdown", "linger"):
                error(f"{conn.host}: closing connection: {reason}")
        except (_Close, ConnectionError, TimeoutError):
            pass
        except OSError as exc:
            error(f"{conn.host}: connection error: {exc}")
        except Exception as exc:  # a bug must cost one connection, not the server
            error(f"{conn.host}: internal error: {exc!r}")
        try:
            if linger:
                await conn.linger()
        except asyncio.CancelledError:
            pass  # the linger deadline (or the end of shutdown) came first
        finally:
            self.conns.discard(conn)
            rest = conn.pending
            if isinstance(rest, _Rest):  # begun inline, never finished: let go of the file
                conn.pending = None
                self.files.release(rest.handle)
            conn.close()

    async def _linger(self, conn: Conn) -> None:
        """Close ``conn`` lingering now (``Conn.linger``); ``_run`` does it after any close."""
        await conn.linger()

    async def _exchange(self, conn: Conn) -> bool:
        """Read requests and answer them in order; return whether to close lingering.

        ``False``: the client closed its side with nothing left to answer.
        """
        reader = conn.reader
        while True:
            answered = False
            rest = conn.pending
            if isinstance(rest, _Rest):
                conn.pending = None
                conn.responding()
                await self._finish(conn, rest)
                answered = True
            while reader.ready:
                req = reader.ready.popleft()
                conn.count_request(req)
                conn.responding()  # BUSY first: a shutdown while we yield waits for this one
                await conn.take_turn()
                if not await self._respond(conn, req):
                    return True  # Connection: close, HTTP/1.0, an error, the request cap
                answered = True
            if reader.broken or self.stopping:
                return True
            if answered:
                conn.responded()
            if reader.continue_due:
                # RFC 9110 §10.1.1: the client waits for this before it sends the body.
                reader.continue_due = False
                await self._send(conn, CONTINUE, False)
            if not await conn.fill():
                return False

    # the inline path -----------------------------------------------------------------

    def _answer_now(self, conn: Conn, req: Request) -> bool | None:
        """Answer a plain GET or HEAD of a known file from the reader callback (``serve_now``).

        The common request of a static server: HTTP/1.1 kept alive, a target
        answered before (resolved in ``_targets`` to a file path), a regular
        file already open (``OpenFiles.cached``) and shorter than ``CORK_MIN``,
        no Range, no precondition, no coding to choose. Its answer is the 200
        ``plan_file`` gives such a request, with the head ``Meta`` keeps ready
        (checked against this request's fstat); a revalidation the planner
        answers with 304 is answered too. Anything else is declined
        (``False``) before a byte is sent, and the task answers it through
        ``_respond``. Returns ``None`` when the socket took only part:
        ``conn.pending`` holds the rest for the task (``_finish``).

        The body goes by ``acopy`` to the plain socket, whose result is the
        count (the task path counts through ``conn.out``, the observed socket,
        because it waits): nothing runs between the call and the count.
        """
        if req.error or not req.keep_alive or req.version != "1.1" or self.stopping:
            return False
        method = req.method
        if (method != "GET" and method != "HEAD") or (
            conn.requests + 1 >= self.limits.max_requests  # the last one says close
        ):
            return False
        hit = self._targets.get(req.target)
        if hit is None or not hit[2]:
            return False
        fields = req.headers
        conditional = len(fields) > 1 and not _PLAIN.issuperset(fields)
        now = conn.loop.time()
        h = self.files.cached(hit[1], now)
        if h is None or h.file is None:
            return False  # not open (the task opens it), or a directory
        st = os.fstat(h.fd)  # every request sees the file as it is now
        meta = h.meta
        if (
            meta is None
            or meta.expires <= now
            or meta.ident != (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        ):
            meta = h.meta = self.metas.get(hit[1], st, "", now, sidecars=self.cfg.precompressed)
        if meta.sidecars and "accept-encoding" in fields:
            return False  # a coding to choose
        size = st.st_size
        status = 200
        if conditional:
            # Only a revalidation that ends in 304 (a browser's reload): the planner decides.
            plan = plan_file(method, fields, size, meta)
            if plan.status != 304:
                return False  # a range, a failed precondition: the task's
            status, head_only = 304, True
            head = headers.head(304, self.dates.get(), plan.fields, None, b"")
        elif size == 0 or size >= CORK_MIN:
            return False  # nothing to send; a long body (corked: _body)
        else:
            head_only = method == "HEAD"
            head = meta.ok_head(self.dates.get())
            if not head_only and size <= self.cfg.small_body:
                return self._answer_small(conn, req, h, hit[1], head, size)
        try:
            n = conn.sock.send(head, 0 if head_only else _MSG_MORE)
        except OSError:
            return False  # nothing sent: the task tries, and meets the error itself
        conn.requests += 1
        if n == len(head):
            if head_only:
                if self.log.enabled:
                    self._log(conn, req, status, 0)
                return True
            whole = h.whole
            if whole is None or whole.length != size:
                whole = h.whole = zcopy.section(h.file, 0, size)
            copy = zcopy.acopy(conn.sock, whole)
            try:
                copy.send(None)
            except StopIteration as stop:
                moved: int = stop.value
                conn.sent += moved
                if self.log.enabled:
                    self._log(conn, req, 200, moved)
                if moved == size:
                    return True
                raise self._shrank(conn, hit[1], moved, size, 0) from None
            except (ConnectionError, TimeoutError) as exc:
                if self.log.enabled:
                    self._log(conn, req, 200, getattr(exc, "bytes_copied", 0))
                raise
            # The socket is full: stop the copy (it unregisters) and let the task go on
            # from what it moved (what the cancellation carries: acopy's contract).
            try:
                copy.throw(asyncio.CancelledError())
            except asyncio.CancelledError as stop:
                moved = getattr(stop, "bytes_copied", 0)
            else:  # pragma: no cover - acopy always ends on a cancellation
                raise AssertionError("acopy went on after a cancellation")
            conn.sent += moved
            rest = _Rest(req, 200, b"", h, moved, size, hit[1], conn.sent - moved)
        else:
            end = 0 if head_only else size
            rest = _Rest(req, status, head[n:], h, 0, end, hit[1], conn.sent)
        h.refs += 1  # released by _finish, or by _run if the task never gets there
        conn.pending = rest
        return None

    def _answer_small(
        self, conn: Conn, req: Request, h: Handle, path: str, head: bytes, size: int
    ) -> bool | None:
        """The inline 200 of a small file: head and body in one sendmsg (``_answer_now``).

        The body is read now, so it is the file as sendfile would send it now; a file
        that is no longer ``size`` bytes is declined (the task answers it as it is).
        """
        try:
            body = os.pread(h.fd, size + 1, 0)  # one more: a file that grew is seen here
            if len(body) != size:
                return False
            n = conn.sock.sendmsg((head, body))
        except OSError:
            return False  # nothing sent: the task tries, and meets the error itself
        conn.requests += 1
        if n == len(head) + size:
            conn.sent += size
            if self.log.enabled:
                self._log(conn, req, 200, size)
            return True
        moved = max(0, n - len(head))
        conn.sent += moved
        h.refs += 1  # released by _finish, or by _run if the task never gets there
        conn.pending = _Rest(req, 200, head[n:], h, 0, 0, path, conn.sent - moved, body[moved:])
        return None

    async def _finish(self, conn: Conn, rest: _Rest) -> None:
        """Send what the inline path could not, then log the request as one."""
        try:
            try:
                if rest.head:
                    await self._send(conn, rest.head, bool(rest.tail) or rest.offset < rest.end)
                if rest.tail:  # through the observed socket: counted as it goes
                    await zcopy.acopy(conn.out, rest.tail)
            except (OSError, asyncio.CancelledError):
                self._log(conn, rest.req, rest.status, conn.sent - rest.logged_from)
                raise
            if rest.offset < rest.end:
                file = rest.handle.file
                assert file is not None
                length = rest.end - rest.offset
                await self._body(
                    conn, rest.req, rest.status, file, rest.offset, length, rest.path, False,
                    rest.logged_from,
                )
        finally:
            self.files.release(rest.handle)
        self._log(conn, rest.req, rest.status, conn.sent - rest.logged_from)

    def _shrank(self, conn: Conn, path: str, n: int, length: int, offset: int) -> _Close:
        error(
            f"{conn.host}: {path} shrank while it was sent: {n} of {length} bytes "
            f"from offset {offset}; closing the connection"
        )
        return _Close()

    async def _send(self, conn: Conn, data: bytes, more: bool) -> None:
        """Write a head or framing from memory; MSG_MORE when a body follows."""
        sock = conn.sock
        try:
            n = sock.send(data, _MSG_MORE if more else 0)
        except BlockingIOError:
            n = 0
        if n < len(data):
            assert self.loop is not None
            await self.loop.sock_sendall(sock, memoryview(data)[n:])

    async def _respond(self, conn: Conn, req: Request) -> bool:
        """Answer one request; return whether the connection stays open."""
        if req.error:
            await self._simple(conn, req, req.error, close=True)
            return False
        close = not req.keep_alive or self.stopping
        method = req.method
        if method not in ("GET", "HEAD"):
            extra = b"Allow: GET, HEAD\r\n"
            await self._simple(conn, req, 405, close=close, extra=extra)
            return not close
        hit = self._targets.get(req.target)
        if hit is None:
            try:
                target = parse_target(req.target, dotfiles=self.cfg.dotfiles)
            except BadTarget as bad:
                await self._simple(conn, req, bad.status, close=close or bad.status == 400)
                return not close and bad.status != 400
            segments = target.segments
            path = os.path.join(self.root, target.relpath) if segments else self.root
            plain = bool(segments) and not target.slash and not (
                self.cfg.stats and segments == STATS_PATH
            )
            if len(self._targets) >= 1024:
                self._targets.clear()
            self._targets[req.target] = hit = (target, path, plain)
        target, path, _ = hit
        if self.cfg.stats and target.segments == STATS_PATH:
            body = (json.dumps(self.stats_dict(), indent=1) + "\n").encode()
            await self._memory(conn, req, 200, b"Content-Type: application/json\r\n", body, close)
            return not close
        assert self.loop is not None
        now = self.loop.time()
        try:
            h, st = self.files.acquire(path, now)
        except Refused as refused:
            await self._simple(conn, req, refused.status, close=close, extra=refused.fields)
            return not close
        try:
            if stat.S_ISDIR(st.st_mode):
                return await self._directory(conn, req, target, path, h.fd, close)
            if target.slash:
                await self._simple(conn, req, 404, close=close)
                return not close
            meta = self.metas.get(path, st, "", now, sidecars=self.cfg.precompressed)
            coding = None
            if meta.sidecars:
                coding = headers.negotiate(req.headers.get("accept-encoding"), meta.sidecars)
            if coding:
                side = sidecar_path(path, coding)
                try:
                    side_h, side_st = self.files.acquire(side, now)
                except Refused:
                    pass  # vanished since the sidecar list was made: the file itself will do
                else:
                    if stat.S_ISREG(side_st.st_mode):
                        self.files.release(h)
                        h, st, path = side_h, side_st, side
                        meta = self.metas.get(path, st, coding, now, sidecars=False)
                    else:
                        self.files.release(side_h)
            assert h.file is not None  # a regular file
            return await self._file(conn, req, h.file, st, meta, path, close)
        finally:
            self.files.release(h)

    async def _file(
        self, conn: Conn, req: Request, fd: io.FileIO, st: os.stat_result, meta: Meta, path: str,
        close: bool,
    ) -> bool:
        """Ask the planner what to say about the file, then send it: memory parts, then ranges."""
        plan = plan_file(req.method, req.headers, st.st_size, meta)
        connection = headers.connection_field(close, req.version == "1.0")
        data = headers.head(plan.status, self.dates.get(), plan.fields, plan.length, connection)
        start = conn.sent
        parts = plan.parts
        first = b""
        if parts and isinstance(parts[0], bytes):
            # The head and the first framing (or a small error page) leave in one send.
            first, parts = parts[0], parts[1:]
        await self._send(conn, data + first, bool(parts))
        conn.sent += len(first)
        for i, part in enumerate(parts):
            if isinstance(part, bytes):
                await self._send(conn, part, i + 1 < len(parts))
                conn.sent += len(part)
            else:
                await self._body(conn, req, plan.status, fd, part.first, part.length, path, False)
        self._log(conn, req, plan.status, conn.sent - start)
        return not close

    async def _body(
        self, conn: Conn, req: Request, status: int, fd: io.FileIO, offset: int, length: int,
        path: str, log: bool = True, logged_from: int | None = None,
    ) -> None:
        """Send ``length`` bytes of the file from ``offset`` by sendfile; short means close.

        A failure logs the request with the bytes sent since ``logged_from``
        (default: since this call).
        """
        before = conn.sent if logged_from is None else logged_from
        cork = length >= CORK_MIN
        try:
            if cork:
                # Long bodies go out in many sendfile calls as ACKs free buffer space; corked,
                # each tail waits for a full segment instead of leaving as a small packet
                # (nginx's tcp_nopush). Measured: about a quarter less CPU per GiB.
                conn.sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1)
            n = await zcopy.acopy(conn.out, zcopy.section(fd, offset, length))
        except (ConnectionError, TimeoutError) as exc:
            self._log(conn, req, status, conn.sent - before)
            raise _Close from exc
        except asyncio.CancelledError:
            self._log(conn, req, status, conn.sent - before)
            raise
        finally:
            if cork:
                # Uncorking pushes the tail now: nothing waits out the 200 ms cork timer.
                with contextlib.suppress(OSError):
                    conn.sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 0)
        if n < length:
            self._log(conn, req, status, conn.sent - before)
            raise self._shrank(conn, path, n, length, offset)
        if log:
            self._log(conn, req, status, conn.sent - before)

    async def _directory(
        self, conn: Conn, req: Request, target: Target, path: str, dir_fd: int, close: bool
    ) -> bool:
        if not target.slash and target.segments:
            location = target.url_path + "/" + (f"?{target.query}" if target.query else "")
            extra = f"Location: {location}\r\n".encode("latin-1")
            await self._simple(conn, req, 301, close=close, extra=extra)
            return not close
        index = os.path.join(path, "index.html")
        assert self.loop is not None
        now = self.loop.time()
        try:
            h, st = self.files.acquire(index, now)
        except Refused as refused:
            if refused.status == 503:  # out of fds: neither the index nor a listing now
                await self._simple(conn, req, 503, close=close, extra=refused.fields)
                return not close
        else:
            try:
                if h.file is not None:
                    meta = self.metas.get(index, st, "", now, sidecars=False)
                    return await self._file(conn, req, h.file, st, meta, index, close)
            finally:
                self.files.release(h)
        if not self.cfg.listing:
            await self._simple(conn, req, 403, close=close)
            return not close
        try:
            entries = self.files.list_dir(dir_fd)  # the checked fd, never the name again
        except Refused as refused:
            await self._simple(conn, req, refused.status, close=close, extra=refused.fields)
            return not close
        body = listing.render(target.url_path if target.segments else "/", entries)
        ctype = b"Content-Type: text/html; charset=utf-8\r\n"
        await self._memory(conn, req, 200, ctype, body, close)
        return not close

    async def _memory(
        self, conn: Conn, req: Request, status: int, fields: bytes, body: bytes, close: bool
    ) -> None:
        """A response generated in memory (listings, errors, stats)."""
        connection = headers.connection_field(close, req.version == "1.0")
        data = headers.head(status, self.dates.get(), fields, len(body), connection)
        if req.method == "HEAD":
            await self._send(conn, data, False)
            self._log(conn, req, status, 0)
            return
        await self._send(conn, data + body, False)
        conn.sent += len(body)
        self._log(conn, req, status, len(body))

    async def _simple(
        self, conn: Conn, req: Request, status: int, *, close: bool, extra: bytes = b""
    ) -> None:
        await self._memory(conn, req, status, HTML + extra, headers.simple_body(status), close)

    def _log(self, conn: Conn, req: Request, status: int, nbytes: int) -> None:
        if self.log.enabled:
            h = req.headers
            self.log.write(
                conn.host, req.request_line, status, nbytes, h.get("referer"), h.get("user-agent")
            )

