"""``zcopy serve``: an HTTP/1.1 static file server whose body bytes all go by sendfile.

Usage mirrors ``python -m http.server``::

    zcopy serve [DIR] [--port 8000] [--bind ADDR] [--workers N]

See docs/serve.md for the features, limits and the range-abuse cap. This module
imports nothing heavy: the server (and httptools) is imported by ``run()``, so
``import zcopy.serve.plan`` from elsewhere stays light. The daemon side (listen,
workers, signals, log format) is ``zcopy.daemon``'s.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> p.parse_args(["site", "--port", "0"]).port
0
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import daemon
from .._cliargs import byte_count, port_number, positive_int, seconds
from .log import NAME, STDERR, AccessLog
from .loops import LOOPS, check_loop, run_loop

SMALL_BODY = 8 * 1024  # server.SMALL_BODY (not imported here: the server module is heavy)
SMALL_BODY_MAX = 256 * 1024  # server.CORK_MIN: longer bodies are never answered inline

if TYPE_CHECKING:
    from .server import Config



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``zcopy serve`` options.

    >>> p = argparse.ArgumentParser(); add_arguments(p); p.parse_args([]).workers
    1
    """
    parser.add_argument(  # None: not given (with --app, a DIR is a usage error)
        "directory", nargs="?", default=None, help="directory to serve (default .)"
    )
    parser.add_argument(
        "--port", "-p", type=port_number, default=8000, help="TCP port (0: any free one)"
    )
    parser.add_argument("--bind", "-b", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--workers", "-w", type=positive_int, default=1,
        help="processes sharing one listening socket, supervised (a dead one is replaced)",
    )
    parser.add_argument("--no-listing", action="store_true", help="no directory listings (403)")
    parser.add_argument(
        "--follow-symlinks", action="store_true", help="serve symlinks that leave DIR"
    )
    parser.add_argument(
        "--show-dotfiles", action="store_true", help="serve and list names starting with a dot"
    )
    parser.add_argument(
        "--no-precompressed", action="store_true", help="ignore file.br / file.gz sidecars"
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="expose /_zcopy/stats and print per-route byte counts on SIGUSR1 and at exit",
    )
    access = parser.add_mutually_exclusive_group()
    access.add_argument(
        "--access-log", metavar="FILE", default=STDERR,
        help="one Combined Log Format line per request, appended to FILE ('-': stdout)",
    )
    access.add_argument(
        "--no-access-log", action="store_true", help="no access log (default: on, to stderr)"
    )
    parser.add_argument(
        "--header-timeout", type=seconds, default=10.0, metavar="SECONDS",
        help="a request head must arrive within this long (default 10)",
    )
    parser.add_argument(
        "--keepalive-timeout", type=seconds, default=15.0, metavar="SECONDS",
        help="close an idle keep-alive connection after this long (default 15)",
    )
    parser.add_argument(
        "--send-timeout", type=seconds, default=30.0, metavar="SECONDS",
        help="close a connection whose send made no progress for this long (default 30)",
    )
    parser.add_argument(
        "--shutdown-timeout", type=seconds, default=10.0, metavar="SECONDS",
        help="on SIGTERM/SIGINT, give transfers in flight this long (default 10)",
    )
    parser.add_argument(
        "--max-connections", type=positive_int, default=1024, metavar="N",
        help="answer 503 to connections beyond N (default 1024)",
    )
    parser.add_argument(
        "--body-timeout", type=seconds, default=60.0, metavar="SECONDS",
        help="a request body must arrive within this long of its head (default 60)",
    )
    parser.add_argument(
        "--linger-timeout", type=seconds, default=5.0, metavar="SECONDS",
        help="after the last response, drain the client's input this long before closing "
        "(default 5; 0: close at once)",
    )
    parser.add_argument(
        "--max-requests", type=positive_int, default=1000, metavar="N",
        help="close a keep-alive connection after N requests (default 1000)",
    )
    parser.add_argument(
        "--small-body", type=byte_count, default=SMALL_BODY, metavar="BYTES",
        help="read kept-alive bodies up to BYTES at each request and send them with their "
        f"head in one sendmsg (default {SMALL_BODY}; 0: every body by sendfile)",
    )
    parser.add_argument(
        "--loop", choices=LOOPS, default="asyncio",
        help="event loop, for static files and apps alike (uvloop must be installed)",
    )
    app = parser.add_argument_group("ASGI app (docs/asgi.md)")
    app.add_argument(
        "--app", metavar="MODULE:ATTR", default=None,
        help="serve this ASGI app instead of DIR (imported like uvicorn: main:app)",
    )
    app.add_argument("--app-dir", default=".", metavar="DIR", help="import the app from DIR")
    app.add_argument(
        "--factory", action="store_true", help="ATTR is a callable that returns the app"
    )
    app.add_argument(
        "--root-path", default="", metavar="PATH", help="ASGI root_path (mounted under PATH)"
    )
    app.add_argument(
        "--lifespan", choices=("auto", "on", "off"), default="auto",
        help="run the app's lifespan startup/shutdown (default auto: if it speaks it)",
    )


def config_from(args: argparse.Namespace) -> Config:
    """Build the server ``Config`` from parsed arguments.

    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> config_from(p.parse_args(["/", "--no-listing"])).listing
    False
    """
    from .server import Config

    return Config(
        root=os.path.realpath(args.directory or "."),
        listing=not args.no_listing,
        follow_symlinks=args.follow_symlinks,
        dotfiles=args.show_dotfiles,
        precompressed=not args.no_precompressed,
        stats=args.stats,
        header_timeout=args.header_timeout,
        keepalive_timeout=args.keepalive_timeout,
        send_timeout=args.send_timeout,
        shutdown_timeout=args.shutdown_timeout,
        max_connections=args.max_connections,
        access_log=None if args.no_access_log else args.access_log,
        body_timeout=args.body_timeout,
        linger_timeout=args.linger_timeout,
        max_requests=args.max_requests,
        small_body=args.small_body,
    )


def run(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT; return the exit status.

    Startup errors are one line on stderr and status 2 (usage) or 1 (a port in
    use, an access log that cannot be opened), never a traceback:

    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> run(p.parse_args(["/nonexistent/dir"]))
    2
    """
    config = config_from(args)
    if getattr(args, "app", None):
        from .asgi import run as run_app

        return run_app(args, config)
    try:
        listener = _prepare(args, config)
    except daemon.StartupError as exc:
        daemon.startup_failed(NAME, str(exc))
        return exc.status
    daemon.setup_log(NAME)
    from .server import Server

    loop = getattr(args, "loop", "asyncio")

    def worker_main(sock: socket.socket, ready: Callable[[], object]) -> int:
        run_loop(Server(config, sock, ready).serve(), loop)
        return 0

    with listener:
        return daemon.run(
            NAME, listener, worker_main, workers=args.workers, grace=config.shutdown_timeout,
            on_ready=lambda: _announce(config, listener.getsockname(), args.workers),
            forward=(signal.SIGUSR1,) if config.stats else (),  # --stats: print them
        )


def _prepare(args: argparse.Namespace, config: Config) -> socket.socket:
    """Check what can be checked before forking, then listen; ``StartupError`` says what failed."""
    if not os.path.isdir(config.root):
        raise daemon.StartupError(f"{args.directory or '.'} is not a directory", daemon.USAGE)
    check_loop(getattr(args, "loop", "asyncio"))
    if config.small_body > SMALL_BODY_MAX:
        raise daemon.StartupError(
            f"--small-body {config.small_body}: at most {SMALL_BODY_MAX} (longer bodies are "
            "sent corked, by sendfile)",
            daemon.USAGE,
        )
    if config.access_log is not None:
        try:  # each worker opens its own; a path that cannot be opened fails here, once
            AccessLog(config.access_log).close()
        except OSError as exc:
            raise daemon.StartupError(
                f"--access-log {config.access_log}: {(exc.strerror or str(exc)).lower()}"
            ) from None
    listener = daemon.listen(args.bind, args.port)
    daemon.raise_fd_limit(config.max_connections + 1024)
    return listener


def _announce(config: Config, addr: tuple[str, int], workers: int) -> None:
    """The ready line, on stdout as ``http.server``'s (scripts read the port from it)."""
    where = f"http://{daemon.where(addr[0], addr[1])}/"
    daemon.say(
        NAME,
        f"serving {config.root} on {where} (pid {os.getpid()}, {workers} "
        f"worker{'s' if workers > 1 else ''}); press Ctrl+C to stop",
        sys.stdout,
    )
