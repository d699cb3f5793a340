"""The daemon side shared by ``zcopy serve`` and ``zcopy proxy`` (and any zcopy server).

A server brings only what is its own: a ``worker_main(listener, ready)`` that
serves on the listening socket until SIGTERM/SIGINT (calling ``ready()`` once it
accepts) and returns an exit status. This package does the rest, one way for
every server:

* ``listen(host, port)``: an exclusive listening socket (no ``SO_REUSEPORT``; a
  second daemon on the same address fails with "address already in use").
* ``raise_fd_limit(n)``: room for the connection cap.
* ``run(name, listener, worker_main, workers=N, grace=S)``: one worker runs in
  this process; N > 1 are forked on the one socket, each dying with its parent
  (``PR_SET_PDEATHSIG``), and supervised (see ``zcopy.daemon.workers``: a worker
  that dies is replaced, signals are forwarded, stragglers killed after the
  grace period).
* ``setup_log(name)``: the one log format,
  ``2026-12-01 22:40:01 zcopy serve[1234]: message``, on stderr.
* ``StartupError``: what stops a daemon from starting, as one line and an exit
  status (2: usage, 1: the machine said no); ``run`` prints it, never a traceback.

A complete daemon with two workers, stopped as soon as it is ready:

>>> import os, signal, time
>>> from zcopy import daemon
>>> listener = daemon.listen("127.0.0.1", 0)
>>> def worker_main(sock, ready):
...     ready()          # accepting from here on (a real server: its event loop)
...     time.sleep(30)   # serve until SIGTERM, which ends this worker
>>> def ready():
...     print("ready")
...     os.kill(os.getpid(), signal.SIGTERM)  # as an operator's Ctrl+C would
>>> daemon.run("zcopy demo", listener, worker_main, workers=2, grace=1, on_ready=ready)
ready
0
>>> listener.close()
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

from .errors import FAILURE, USAGE, StartupError
from .limits import raise_fd_limit
from .listen import listen, where
from .log import say, startup_failed
from .log import setup as setup_log
from .workers import Supervisor, WorkerMain, ignore_optional

__all__ = [
    "FAILURE",
    "USAGE",
    "StartupError",
    "WorkerMain",
    "listen",
    "raise_fd_limit",
    "run",
    "say",
    "setup_log",
    "startup_failed",
    "where",
]


def run(
    name: str,
    listener: socket.socket,
    worker_main: WorkerMain,
    *,
    workers: int = 1,
    grace: float = 10.0,
    on_ready: Callable[[], object] | None = None,
    forward: tuple[int, ...] = (),
) -> int:
    """Serve ``listener`` with ``worker_main`` in ``workers`` processes; return the exit status.

    ``on_ready()`` runs once every worker has called its ``ready()`` (the moment to
    print where the daemon listens). With one worker, ``worker_main`` runs in this
    process and handles its own signals; with more, the parent supervises them
    (``grace``: seconds a worker may take to finish after SIGTERM before it is
    killed; ``forward``: other signals the workers handle, e.g. ``(signal.SIGUSR1,)``,
    passed on to each of them, while SIGUSR1, SIGUSR2 and SIGHUP not listed are
    ignored by the parent; a worker, or the one process, ignores all three until
    its server installs its own handlers, so no such signal ever kills it). A
    ``StartupError`` raised by ``worker_main`` is printed as ``name: message`` and
    its status returned.

    >>> from zcopy import daemon
    >>> with daemon.listen("127.0.0.1", 0) as s:
    ...     daemon.run("zcopy demo", s, lambda sock, ready: ready(), on_ready=lambda: print("up"))
    up
    0
    >>> def broken(sock, ready):
    ...     raise daemon.StartupError("--access-log /nonexistent/log: no such directory")
    >>> with daemon.listen("127.0.0.1", 0) as s:
    ...     daemon.run("zcopy demo", s, broken)
    1
    """
    if workers <= 1:
        replaced = ignore_optional()  # the server's own handlers come later
        try:
            result = worker_main(listener, on_ready or _nothing)
        except StartupError as exc:
            startup_failed(name, str(exc))
            return exc.status
        finally:
            for sig, handler in replaced.items():
                signal.signal(sig, handler)
        return result if isinstance(result, int) else 0
    return Supervisor(name, listener, worker_main, workers, grace, on_ready, forward).run()


def _nothing() -> None:
    pass
