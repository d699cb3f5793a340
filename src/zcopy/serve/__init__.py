"""``zcopy serve``: an HTTP/1.1 static file server whose body bytes all go by sendfile.

Usage mirrors ``python -m http.server``::

    zcopy serve [DIR] [--port 8000] [--bind ADDR] [--workers N]

See docs/serve.md for the features, limits and the range-abuse cap.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> p.parse_args(["site", "--port", "0"]).port
0
"""

from __future__ import annotations

import argparse
import os
import sys

from .._cliargs import positive_int, seconds
from .server import Config, listen, run_server
from .workers import run_workers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``zcopy serve`` options.

    >>> p = argparse.ArgumentParser(); add_arguments(p); p.parse_args([]).workers
    1
    """
    parser.add_argument("directory", nargs="?", default=".", help="directory to serve (default .)")
    parser.add_argument("--port", "-p", type=int, default=8000, help="TCP port (0: any free one)")
    parser.add_argument("--bind", "-b", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--workers", "-w", type=positive_int, default=1,
        help="processes sharing the port (SO_REUSEPORT)",
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
    parser.add_argument(
        "--access-log", metavar="FILE", default=None,
        help="Combined Log Format access log ('-' for stdout; default: none)",
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
    app.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio",
        help="event loop for the app (uvloop must be installed)",
    )


def config_from(args: argparse.Namespace) -> Config:
    """Build the server ``Config`` from parsed arguments.

    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> config_from(p.parse_args(["/", "--no-listing"])).listing
    False
    """
    return Config(
        root=os.path.realpath(args.directory),
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
        access_log=args.access_log,
        body_timeout=args.body_timeout,
        linger_timeout=args.linger_timeout,
        max_requests=args.max_requests,
    )


def run(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT; return the exit status.

    For example (it serves until stopped, so it is not a doctest)::

        run(zcopy.cli.build_parser().parse_args(["serve", "/srv/www", "--port", "8000"]))
    """
    config = config_from(args)
    if getattr(args, "app", None):
        from .asgi import run as run_app

        return run_app(args, config)
    if not os.path.isdir(config.root):
        print(f"zcopy serve: {args.directory} is not a directory", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("zcopy serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        return run_workers(config, args.bind, args.port, args.workers)
    listener = listen(args.bind, args.port)
    run_server(config, listener, lambda: _announce(config, listener.getsockname(), 1))
    return 0


def _announce(config: Config, addr: tuple[str, int], workers: int) -> None:
    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    print(
        f"zcopy serve: serving {config.root} on http://{host}:{addr[1]}/ "
        f"(pid {os.getpid()}, {workers} worker{'s' if workers > 1 else ''})",
        flush=True,
    )
