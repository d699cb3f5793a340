"""The ASGI server: the static server's connection engine with an app where the files were.

``AsgiServer`` is ``zcopy serve``'s ``Server`` (accept, the connection cap,
the header/idle/stalled-send timeouts, pipelining, graceful shutdown, the
access log) with one change: each request is answered by calling the app
instead of looking up a file. The connection loop reads a request head,
calls ``app(scope, receive, send)`` in the connection's own task (no task per
request), then discards what is left of the request body and goes on with
the next request. Lifespan startup runs before the first accept, shutdown
after the last connection.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from .. import headers
from ..conn import Conn
from ..log import error
from ..loops import run_loop
from ..parser import MAX_DISCARD, Request
from ..server import Config, Server, _Close
from .channel import ClientDisconnected, Exchange, FileShrank
from .lifespan import Lifespan, Mode
from .reader import AsgiRequest, AsgiRequestReader
from .scope import Address, BadTarget, address, http_scope

_NEVER = float("inf")
WEBSOCKET_REFUSAL = "WebSocket is not supported by zcopy serve yet (HTTP only)."


@dataclass(slots=True)
class AppOptions:
    """What ``--app`` and its companions asked for.

    >>> AppOptions("main:app").lifespan
    <Mode.AUTO: 'auto'>
    """

    spec: str
    app_dir: str = "."
    factory: bool = False
    root_path: str = ""
    lifespan: Mode = Mode.AUTO
    loop: str = "asyncio"


class AsgiServer(Server):
    """One process's ASGI server on ``listener``.

    >>> async def app(scope, receive, send): ...
    >>> from zcopy.serve.server import listen
    >>> s = AsgiServer(Config("."), listen("127.0.0.1", 0), app, AppOptions("m:app"))
    >>> s.lifespan.mode.value; s.listener.close()
    'auto'
    """

    def __init__(
        self,
        config: Config,
        listener: socket.socket,
        app: Any,
        options: AppOptions,
        on_ready: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(config, listener, on_ready)
        self.app = app
        self.options = options
        self.root_path = options.root_path
        self.lifespan = Lifespan(app, options.lifespan)
        self.failed = False  # lifespan startup or shutdown failed: exit non-zero
        self.server_addr: Address | None = address(listener.getsockname())
        self._clients: dict[Conn, Address | None] = {}
        # Connections whose app is running: in flight for a shutdown even while the app
        # waits in receive() for body bytes (state BODY, which is idle to the engine).
        self._in_app: set[Conn] = set()
        # The reader callback receives for us (``Conn.serve_now``) and always declines to
        # answer: the app answers in the task. Received in the callback, the request is off
        # the socket before the loop polls again; woken only, the task had not read it yet,
        # so the next poll reported the same input once more, a stale readiness that later
        # cost a spurious wake-up (a recv that found nothing) or an epoll_ctl pair (measured
        # with perf stat: 0.31 epoll_ctl and 0.1 recv per 1 MiB ranged request, now ~0).
        self._inline = True

    def _answer_now(self, conn: Conn, req: Request) -> bool:
        """Never answered from the reader callback: every request is the app's (the task's)."""
        return False

    def _nothing_in_flight(self, conn: Conn) -> bool:
        """An app reading its request body is in flight: a shutdown lets it answer."""
        return conn not in self._in_app and super()._nothing_in_flight(conn)

    async def serve(self) -> None:
        """Lifespan startup, then serve until told to stop, then lifespan shutdown."""
        if not await self.lifespan.startup():
            self.failed = True
            return
        # What exists now (the app, its routes, what startup made) lives as long as the
        # server: out of the collector's sight, every collection of the garbage requests
        # make costs less (about 5% of a small ranged response's CPU, measured).
        gc.collect()
        gc.freeze()
        try:
            await super().serve()
        finally:
            if not await self.lifespan.shutdown(self.cfg.shutdown_timeout):
                self.failed = True

    async def _run(self, conn: Conn) -> None:
        conn.reader = AsgiRequestReader()
        try:
            peer: object = conn.sock.getpeername()
        except OSError:
            peer = None
        self._clients[conn] = address(peer)
        try:
            await super()._run(conn)
        finally:
            del self._clients[conn]

    async def _respond(self, conn: Conn, req: Request) -> bool:
        """Answer one request with the app; return whether the connection stays open."""
        if req.error or not isinstance(req, AsgiRequest):
            return await super()._respond(conn, req)  # the engine's 4xx/5xx, then close
        if req.websocket:
            await self._refuse_websocket(conn, req)
            return False
        try:
            scope = http_scope(
                req,
                client=self._clients.get(conn),
                server=self.server_addr,
                root_path=self.root_path,
                state=self.lifespan.state if self.lifespan.supported else None,
            )
        except BadTarget:
            await self._simple(conn, req, 400, close=True)
            return False
        ex = Exchange(self, conn, req)
        conn.deadline = _NEVER  # the app's time is its own; socket waits arm their deadlines
        self._in_app.add(conn)
        try:
            await self.app(scope, ex.receive, ex.send)
        except ClientDisconnected:
            ex.close = True  # the app let our OSError out: the client is gone, nothing to say
        except FileShrank as exc:
            error(f"{conn.host}: {req.request_line}: {exc}")
            if ex.head_sent:
                self._cut(conn, req, ex)
            await self._error_response(conn, req, ex, 500)  # nothing is on the wire yet
            return False
        except asyncio.CancelledError:
            # The end of a shutdown's wait, or a stalled send: a body under way is cut,
            # never ended by the close's FIN (which would complete a body framed by it).
            if ex.head_sent and not ex.done:
                ex.abort()
            raise
        except BaseException as exc:  # SystemExit too: an app's sys.exit() is not the server's
            return await self._app_failed(conn, req, ex, exc)
        finally:
            self._in_app.discard(conn)
            if ex.reading:  # the app read the socket: a receive() it left running must stop
                await ex.settle()
        if self._owes_400(ex):
            return True  # the engine answers the 400 queued behind this request, then closes
        if not ex.done:
            if not ex.head_sent and not ex.disconnected:
                error(f"{conn.host}: {req.request_line}: the app returned without a response")
                await self._error_response(conn, req, ex, 500)
                return False
            if not ex.disconnected:
                error(f"{conn.host}: {req.request_line}: the app returned mid-response")
            self._cut(conn, req, ex)
        self._log(conn, req, ex.head.status if ex.head else 0, ex.body_sent)
        if ex.close or ex.disconnected:
            return False  # the engine closes, lingering: unread input never turns into a RST
        return req.complete or await self._discard_body(conn, ex)

    async def _app_failed(
        self, conn: Conn, req: Request, ex: Exchange, exc: BaseException
    ) -> bool:
        """An exception from the app: 500 if nothing was sent yet, else cut the connection."""
        if ex.disconnected:
            # The client left and the app's send said so: nothing to report. Or its body was
            # malformed (the app heard a disconnect, e.g. Starlette's ClientDisconnect): a 400.
            return self._owes_400(ex)
        error(
            f"{conn.host}: {req.request_line}: exception in the app\n"
            + "".join(traceback.format_exception(exc)).rstrip()
        )
        if not ex.head_sent:
            await self._error_response(conn, req, ex, 500)
        elif not ex.done:
            self._cut(conn, req, ex)  # the client must see a cut, not a clean (but short) end
        else:  # raised after a complete response (a background task): the client has it all
            self._log(conn, req, ex.head.status if ex.head else 0, ex.body_sent)
        return False

    def _owes_400(self, ex: Exchange) -> bool:
        """Whether the request's body broke the protocol and nothing was answered yet.

        The reader queued a 400 request behind this one; answering it tells the
        client, which is still there, why the connection closes.
        """
        return ex.malformed and not ex.head_sent and bool(ex.conn.reader.ready)

    def _cut(self, conn: Conn, req: Request, ex: Exchange) -> NoReturn:
        """A response that cannot be finished: log it, then close with a reset.

        Never a lingering close: its FIN would end a body framed by the end of the
        connection (HTTP/1.0) as if it were complete.
        """
        self._log(conn, req, ex.head.status if ex.head else 0, ex.body_sent)
        ex.abort()
        raise _Close

    async def _error_response(self, conn: Conn, req: Request, ex: Exchange, status: int) -> None:
        ex.done = True
        await self._simple(conn, req, status, close=True)

    async def _discard_body(self, conn: Conn, ex: Exchange) -> bool:
        """Read and drop the rest of a body the app did not read; False: close instead."""
        req = ex.req
        if req.complete:
            return True
        if req.expect_continue and not ex.continued:
            return False  # the client holds its body back for a 100 we never sent: close
        dropped = 0
        while not req.complete:
            dropped += req.buffered
            req.body.clear()
            req.buffered = 0
            if dropped > MAX_DISCARD or conn.reader.broken:
                return False
            ex.delivered = True  # nothing more goes to the app
            if not await ex.read_more():
                return False
        req.body.clear()
        return True

    async def _refuse_websocket(self, conn: Conn, req: Request) -> None:
        """A WebSocket handshake gets a plain HTTP refusal, then the connection closes."""
        body = WEBSOCKET_REFUSAL.encode() + b"\n"
        connection = headers.connection_field(True, False)
        fields = b"Content-Type: text/plain; charset=utf-8\r\n"
        data = headers.head(403, self.dates.get(), fields, len(body), connection)
        await self._send(conn, data + body, False)
        self._log(conn, req, 403, len(body))


def run_app_server(
    config: Config,
    listener: socket.socket,
    app: Any,
    options: AppOptions,
    on_ready: Callable[[], object] | None = None,
) -> int:
    """Serve ``app`` on ``listener`` in this process until SIGTERM/SIGINT; the exit status.

    An app whose lifespan startup fails never serves, and the status says so:

    >>> async def app(scope, receive, send):
    ...     await receive()
    ...     await send({"type": "lifespan.startup.failed", "message": "no database"})
    >>> from zcopy.serve.server import listen
    >>> with listen("127.0.0.1", 0) as sock:
    ...     run_app_server(Config("."), sock, app, AppOptions("m:app"))
    1
    """
    server = AsgiServer(config, listener, app, options, on_ready)
    run_loop(server.serve(), options.loop)
    return 1 if server.failed else 0
