"""Command-line options of ``zcopy proxy``, parsed into one immutable Config (sans-IO)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .._cliargs import from_parser, positive_int, seconds

Address = tuple[str, int]


def parse_address(text: str) -> Address:
    """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6) into ``(host, port)``.

    >>> parse_address("127.0.0.1:8080"), parse_address("[::1]:0")
    (('127.0.0.1', 8080), ('::1', 0))
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, as [::1]:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is out of range 0-65535")
    return host, port


def format_address(addr: Address) -> str:
    """The inverse of ``parse_address``.

    >>> format_address(("::1", 80)), format_address(("127.0.0.1", 80))
    ('[::1]:80', '127.0.0.1:80')
    """
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_address_arg = from_parser(parse_address)
_seconds = seconds
_positive = positive_int


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the proxy needs to know, checked.

    ``idle_timeout`` of ``None`` means connections may stay quiet forever.

    >>> Config(("127.0.0.1", 0), (("127.0.0.1", 9),)).splice
    True
    """

    listen: Address
    upstreams: tuple[Address, ...]
    splice: bool = True
    max_connections: int = 4096
    connect_timeout: float = 5.0
    idle_timeout: float | None = 300.0
    grace: float = 10.0
    workers: int = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the proxy's options on ``parser``.

    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> from_args(p.parse_args(["--listen", ":0", "--upstream", "h:1"])).listen
    ('0.0.0.0', 0)
    """
    parser.add_argument("--listen", required=True, type=_listen_arg, metavar="HOST:PORT",
                        help="address to accept clients on (port 0: any free port, printed)")
    parser.add_argument("--upstream", required=True, action="append", type=_address_arg,
                        metavar="HOST:PORT",
                        help="where to relay; repeat for round-robin (a refused one is skipped)")
    parser.add_argument("--no-splice", action="store_true",
                        help="relay through a user-space buffer instead of splice (to compare)")
    parser.add_argument("--max-connections", type=_positive, default=4096, metavar="N",
                        help="refuse clients beyond N open connections (default 4096)")
    parser.add_argument("--connect-timeout", type=_seconds, default=5.0, metavar="SECONDS",
                        help="give up on an upstream after this long (default 5)")
    parser.add_argument("--idle-timeout", type=_seconds, default=300.0, metavar="SECONDS",
                        help="close a connection quiet both ways this long; 0: never (default 300)")
    parser.add_argument("--grace", type=_seconds, default=10.0, metavar="SECONDS",
                        help="on SIGTERM, let open connections finish this long (default 10)")
    parser.add_argument("--workers", type=_positive, default=1, metavar="N",
                        help="N processes accepting on one shared listening socket (default 1)")


def _listen_arg(text: str) -> Address:
    if text.startswith(":"):
        text = "0.0.0.0" + text
    return _address_arg(text)


def from_args(args: argparse.Namespace) -> Config:
    """Build the Config from parsed arguments."""
    return Config(
        listen=args.listen,
        upstreams=tuple(args.upstream),
        splice=not args.no_splice,
        max_connections=args.max_connections,
        connect_timeout=args.connect_timeout,
        idle_timeout=args.idle_timeout or None,
        grace=args.grace,
        workers=args.workers,
    )
