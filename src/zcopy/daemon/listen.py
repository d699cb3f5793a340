"""The listening socket: exclusive to this daemon, shared by its workers through fork.

No ``SO_REUSEPORT``: with it any process of the same user could bind the same
address and silently take part of the traffic. Workers share the one socket
created here before they are forked. ``SO_REUSEADDR`` is kept: on Linux it only
lets a restarted server bind over connections left in TIME_WAIT, never next to a
live listener.
"""

from __future__ import annotations

import errno
import os
import socket

from .errors import FAILURE, USAGE, StartupError


def where(host: str, port: int) -> str:
    """``HOST:PORT`` as an operator writes it (``[v6]:PORT``).

    >>> where("::1", 80), where("127.0.0.1", 0)
    ('[::1]:80', '127.0.0.1:0')
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(exc: OSError) -> str:
    text = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    if exc.errno == errno.EADDRINUSE:
        return text + " (another server is listening there)"
    if exc.errno == errno.EACCES:
        return text + " (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return text + " (no interface of this machine has that address)"
    return text


def listen(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """Bind and listen on ``host:port`` (port 0: any free one), non-blocking; or ``StartupError``.

    An impossible port or an address that does not resolve is a usage error
    (status 2); a port in use or not permitted is status 1.

    >>> s = listen("127.0.0.1", 0)
    >>> s.getsockname()[0], s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    ('127.0.0.1', 0)
    >>> def fails(host, port):
    ...     try:
    ...         listen(host, port).close()
    ...     except StartupError as exc:
    ...         print(exc.status, exc)
    >>> fails("127.0.0.1", 99999)
    2 port 99999 is out of range 0-65535
    >>> fails("127.0.0.1", s.getsockname()[1])  # doctest: +ELLIPSIS
    1 cannot listen on 127.0.0.1:...: address already in use (another server is listening there)
    >>> s.close()
    """
    if not 0 <= port <= 65535:
        raise StartupError(f"port {port} is out of range 0-65535", USAGE)
    spot = where(host, port)
    if host == "":
        family = socket.AF_INET
        sockaddr: tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes] = ("", port)
    else:
        try:
            infos = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise StartupError(
                f"cannot listen on {spot}: {host!r} is not a valid address or host name "
                f"({exc.strerror})",
                USAGE,
            ) from None
        family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {spot}: {_reason(exc)}", FAILURE) from None
    except BaseException:
        sock.close()
        raise
    return sock
