"""``run(args)``: the proxy on the shared daemon side (listen, limits, workers, log)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
from collections.abc import Callable

from .. import daemon
from .config import Config, format_address, from_args
from .server import Proxy

NAME = "zcopy proxy"
log = logging.getLogger("zcopy.proxy")


def _announce(config: Config, addr: tuple[str, int]) -> None:
    mode = "user space (--no-splice)" if not config.splice else "splice"
    ups = ", ".join(format_address(u) for u in config.upstreams)
    log.info(
        "listening on %s -> %s (relay: %s; workers: %d); press Ctrl+C to stop",
        format_address(addr), ups, mode, config.workers,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``zcopy proxy``; returns the exit status.

    A port in use or an address that is not this machine's is one line on
    stderr and status 1 (2 for an address that does not parse), never a traceback.
    """
    config = from_args(args)
    daemon.setup_log(NAME)
    # Two fds per connection: a soft limit of 1,024 would cap us long before --max-connections.
    daemon.raise_fd_limit()
    try:
        listener = daemon.listen(*config.listen)
    except daemon.StartupError as exc:
        daemon.startup_failed(NAME, str(exc))
        return exc.status
    addr = listener.getsockname()[:2]

    def worker_main(sock: socket.socket, ready: Callable[[], object]) -> int:
        asyncio.run(Proxy(config, sock).serve(ready))
        return 0

    with listener:
        return daemon.run(
            NAME, listener, worker_main, workers=config.workers, grace=config.grace,
            on_ready=lambda: _announce(config, addr), forward=(signal.SIGUSR1,),  # stats
        )
