"""``run(args)``: set up logging and limits, bind, announce, then serve (in N workers)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import select
import signal
import socket
import sys
import time

from .config import Config, format_address, from_args
from .server import Proxy, open_listener

log = logging.getLogger("zcopy.proxy")

_READY_TIMEOUT = 30.0


def _raise_fd_limit() -> None:
    # Two fds per connection: a soft limit of 1024 would cap us long before --max-connections.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _announce(config: Config, addr: tuple[str, int]) -> None:
    mode = "user space (--no-splice)" if not config.splice else "splice"
    ups = ", ".join(format_address(u) for u in config.upstreams)
    print(
        f"zcopy proxy: listening on {format_address(addr)} -> {ups} "
        f"(relay: {mode}; workers: {config.workers})",
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``zcopy proxy``; returns the exit status."""
    config = from_args(args)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="zcopy proxy[%(process)d]: %(message)s"
    )
    _raise_fd_limit()
    try:
        # With workers the parent only holds the port (bound, not listening: the
        # kernel queues clients only to listeners); each worker listens on its
        # own SO_REUSEPORT socket and the kernel spreads clients over them.
        listener = open_listener(config.listen, backlog=1024 if config.workers == 1 else None)
    except OSError as exc:
        print(f"zcopy proxy: cannot listen on {format_address(config.listen)}: {exc}",
              file=sys.stderr)
        return 1
    addr = listener.getsockname()[:2]
    if config.workers == 1:
        _announce(config, addr)
        asyncio.run(Proxy(config, listener).serve())
        return 0
    return _run_workers(config, listener, addr)


def _run_workers(config: Config, placeholder: socket.socket, addr: tuple[str, int]) -> int:
    ready_r, ready_w = os.pipe()
    pids: list[int] = []
    for _ in range(config.workers):
        pid = os.fork()
        if pid == 0:  # worker
            status = 1
            try:
                os.close(ready_r)
                placeholder.close()
                listener = open_listener((addr[0], addr[1]))
                os.write(ready_w, b"1")
                os.close(ready_w)
                asyncio.run(Proxy(config, listener).serve())
                status = 0
            finally:
                os._exit(status)
        pids.append(pid)
    os.close(ready_w)
    got = 0
    deadline = time.monotonic() + _READY_TIMEOUT
    while got < config.workers and time.monotonic() < deadline:
        if select.select([ready_r], [], [], max(0.0, deadline - time.monotonic()))[0]:
            chunk = os.read(ready_r, 64)
            if not chunk:
                break
            got += len(chunk)
    os.close(ready_r)
    if got < config.workers:
        log.error("only %d of %d workers started", got, config.workers)
        _signal_all(pids, signal.SIGTERM)
    else:
        _announce(config, addr)

    def forward(sig: int, _frame: object) -> None:
        _signal_all(pids, sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, forward)
    status = 0
    for pid in pids:
        _, code = os.waitpid(pid, 0)
        status = status or os.waitstatus_to_exitcode(code)
    placeholder.close()
    return 0 if status == 0 and got == config.workers else 1


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
