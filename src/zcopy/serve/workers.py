"""``--workers N``: N forked processes, each with its own SO_REUSEPORT listener.

The kernel spreads new connections over the listeners. The parent only holds
the port (bound, never listening, so it gets no connections), forwards
SIGTERM/SIGINT to the workers and waits for them.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from .log import error
from .server import Config, listen, run_server


def _hold_port(bind: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bind, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this worker if the parent dies (even by SIGKILL)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux/glibc: workers may outlive a killed parent


def run_workers(config: Config, bind: str, port: int, workers: int) -> int:
    """Fork ``workers`` servers on one port; return when all have exited.

    For example (it serves until stopped, so it is not a doctest)::

        run_workers(Config("/srv/www"), "127.0.0.1", 8000, 2)
    """
    from . import _announce

    holder = _hold_port(bind, port)
    port = holder.getsockname()[1]
    pids: list[int] = []
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    # Listen in each child before announcing, so a client that reads the
    # announcement can connect at once.
    listeners = [listen(bind, port, reuse_port=True) for _ in range(workers)]
    for i in range(workers):
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                _die_with_parent()
                for j, other in enumerate(listeners):
                    if j != i:
                        other.close()
                holder.close()
                run_server(config, listeners[i])
            except BaseException as exc:  # the child must never return into the parent's code
                error(f"worker {os.getpid()} failed: {exc!r}")
                status = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        pids.append(pid)
    for sock in listeners:
        sock.close()
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    _announce(config, holder.getsockname(), workers)
    worst = 0
    for pid in pids:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and not stopping:
            error(f"worker {pid} exited with status {code}")
        worst = max(worst, abs(code))
    holder.close()
    return worst
