"""The accept loop: cap, connect, relay, close; signals for stats and a graceful stop.

At the end of the grace period the connections still open are reset (``SO_LINGER`` 0),
not closed with a FIN: a client must not take a cut stream for a complete one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Callable

from .._relay import _abort as reset_on_close
from .._relay import relay, relay_plan
from .config import Config, format_address
from .stats import ProxyStats
from .upstreams import AllDown, RoundRobin, connect

log = logging.getLogger("zcopy.proxy")

_ACCEPT_BATCH = 64  # per wake-up, so a flood of clients cannot starve the relays
_FD_PAUSE = 0.5  # seconds to stop accepting when the process is out of fds


def _peer(sock: socket.socket) -> str:
    try:
        return format_address(sock.getpeername())
    except OSError:
        return "?"


class Proxy:
    """One process's proxy: accepts on ``listener`` until ``stop()``, then drains."""

    def __init__(self, config: Config, listener: socket.socket) -> None:
        self.config = config
        self.listener = listener
        self.rr = RoundRobin(config.upstreams)
        self.stats = ProxyStats()
        self.conns: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Event | None = None
        self._accepting = False
        self._plan_logged = False
        self._cutting = False  # the grace period is over: close with a reset

    async def serve(self, on_ready: Callable[[], object] | None = None) -> None:
        """Run until SIGTERM/SIGINT (or ``stop()``); then let connections finish, and report.

        ``on_ready()`` runs once the proxy accepts.
        """
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._resume_accept()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGUSR1, self.print_stats)
        if on_ready is not None:
            on_ready()
        try:
            await self._stop.wait()
            await self._drain()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                loop.remove_signal_handler(sig)
            self._pause_accept()
            self.listener.close()
        log.info("stopped")
        self.print_stats()

    def stop(self) -> None:
        """Stop accepting; open connections get ``config.grace`` seconds to finish."""
        if self._stop is not None and not self._stop.is_set():
            # Closed at once, before the log line: a client from now on is refused
            # by the kernel instead of waiting in a backlog nobody accepts from.
            self._pause_accept()
            self.listener.close()
            log.info(
                "stopping: no new clients; %d open connection(s) get %ss to finish",
                len(self.conns), self.config.grace,
            )
            self._stop.set()

    def print_stats(self) -> None:
        """Log the report (SIGUSR1 and shutdown)."""
        for line in self.stats.report().splitlines():
            log.info("%s", line)

    async def _drain(self) -> None:
        if not self.conns:
            return
        _, late = await asyncio.wait(set(self.conns), timeout=self.config.grace)
        if late:
            log.info("grace period over: resetting %d connection(s) still open", len(late))
            self._cutting = True
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def _resume_accept(self) -> None:
        if not self._accepting and self.listener.fileno() >= 0:
            asyncio.get_running_loop().add_reader(self.listener.fileno(), self._accept)
            self._accepting = True

    def _pause_accept(self) -> None:
        if self._accepting:
            asyncio.get_running_loop().remove_reader(self.listener.fileno())
            self._accepting = False

    def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_ACCEPT_BATCH):
            try:
                client, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.EBADF):
                    # The supervisor shut the shared listener down (stopping): nothing to accept.
                    self._pause_accept()
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The client waits in the backlog; retrying at once would spin.
                    log.warning("accept failed (%s): pausing accepts for %ss", exc, _FD_PAUSE)
                    self._pause_accept()
                    loop.call_later(_FD_PAUSE, self._resume_accept)
                    return
                log.warning("accept failed: %s", exc)
                continue
            if len(self.conns) >= self.config.max_connections:
                self.stats.refused += 1
                log.warning(
                    "refused client %s: connection cap reached (%d open, --max-connections %d)",
                    _peer(client), len(self.conns), self.config.max_connections,
                )
                client.close()
                continue
            task = loop.create_task(self._serve_one(client))
            self.conns.add(task)
            task.add_done_callback(self.conns.discard)

    async def _serve_one(self, client: socket.socket) -> None:
        self.stats.opened()
        upstream: socket.socket | None = None
        who = _peer(client)
        try:
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                upstream, addr = await connect(self.rr, self.config.connect_timeout)
            except AllDown as exc:
                self.stats.failed += 1
                log.warning("client %s closed: %s", who, exc)
                return
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self._plan_logged:
                self._plan_logged = True
                plan = relay_plan(upstream, client, splice=self.config.splice)
                log.info("route client->upstream: %s", plan)
            try:
                await relay(
                    client,
                    upstream,
                    splice=self.config.splice,
                    idle_timeout=self.config.idle_timeout,
                    on_bytes=self.stats.count,
                )
            except TimeoutError:
                self.stats.idle_closed += 1
                log.info(
                    "closed %s <-> %s: idle for %ss",
                    who, format_address(addr), self.config.idle_timeout,
                )
            except OSError as exc:
                self.stats.failed += 1
                log.info("reset %s <-> %s: %s", who, format_address(addr), exc)
        except asyncio.CancelledError:
            if self._cutting:  # a FIN now would pass a cut stream off as a complete one
                reset_on_close(client, *([upstream] if upstream is not None else []))
            raise
        finally:
            if upstream is not None:
                upstream.close()
            with contextlib.suppress(OSError):
                client.close()
            self.stats.closed()
