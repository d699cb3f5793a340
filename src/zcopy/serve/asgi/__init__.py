"""``zcopy serve --app MODULE:ATTR``: an ASGI 3 server whose file responses ride the kernel.

The app is imported like uvicorn does it (``--app-dir``, ``--factory``) and
served over ``zcopy serve``'s HTTP/1.1 engine, with its timeouts and
defences. ``http.response.pathsend`` and ``http.response.zerocopysend`` are
advertised and sent by sendfile through ``zcopy.acopy``. See docs/asgi.md.

One job per module: ``loading`` (find the app), ``reader`` (heads and
streamed bodies), ``scope`` (the ``http`` scope), ``response`` (head and
framing), ``channel`` (one request's receive/send), ``lifespan``, ``server``
(the connection loop).

>>> import argparse
>>> from zcopy.serve import add_arguments
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> options_from(p.parse_args(["--app", "main:app", "--lifespan", "on"])).lifespan
<Mode.ON: 'on'>
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Callable

from ... import daemon
from ..loops import check_loop
from ..server import Config
from .lifespan import Mode
from .loading import AppLoadError, load_app
from .server import AppOptions, run_app_server

NAME = "zcopy serve"


def options_from(args: argparse.Namespace) -> AppOptions:
    """The ``AppOptions`` parsed from the ``zcopy serve`` command line."""
    return AppOptions(
        spec=args.app,
        app_dir=args.app_dir,
        factory=args.factory,
        root_path=args.root_path.rstrip("/"),
        lifespan=Mode(args.lifespan),
        loop=args.loop,
    )


def run(args: argparse.Namespace, config: Config) -> int:
    """Import the app, listen, serve it with ``args.workers`` workers; the exit status.

    >>> args = argparse.Namespace(app="no_such_module_here:app", app_dir=".", factory=False,
    ...                           root_path="", lifespan="auto", loop="asyncio")
    >>> run(args, Config("."))
    1
    >>> run(argparse.Namespace(app="m:app", directory="site"), Config("."))
    2
    """
    if getattr(args, "directory", None) is not None:
        # The app serves every path: a DIR beside it would be silently ignored.
        daemon.startup_failed(
            NAME, f"{args.directory}: a directory and --app exclude each other "
            "(the app answers every path; mount zcopy.asgi.StaticFiles for files)"
        )
        return daemon.USAGE
    options = options_from(args)
    try:
        check_loop(options.loop)
    except daemon.StartupError as exc:
        daemon.startup_failed(NAME, str(exc))
        return exc.status
    try:
        app = load_app(options.spec, app_dir=options.app_dir, factory=options.factory)
    except AppLoadError as exc:
        daemon.startup_failed(NAME, str(exc))
        return daemon.FAILURE
    try:
        listener = daemon.listen(args.bind, args.port)
    except daemon.StartupError as exc:
        daemon.startup_failed(NAME, str(exc))
        return exc.status
    daemon.raise_fd_limit(config.max_connections + 1024)

    def worker_main(sock: socket.socket, ready: Callable[[], object]) -> int:
        return run_app_server(config, sock, app, options, ready)

    with listener:
        return daemon.run(
            NAME,
            listener,
            worker_main,
            workers=args.workers,
            grace=config.shutdown_timeout,
            on_ready=lambda: _announce(options, listener.getsockname(), args.workers),
            forward=(signal.SIGUSR1,) if config.stats else (),  # --stats: each worker's line
        )


def _announce(options: AppOptions, addr: tuple[str, int], workers: int) -> None:
    daemon.say(  # the one log format, on stdout as static serving's ready line
        NAME,
        f"serving app {options.spec} on http://{daemon.where(addr[0], addr[1])}/ "
        f"(pid {os.getpid()}, {workers} worker{'s' if workers > 1 else ''}, "
        f"loop {options.loop})",
        sys.stdout,
    )
