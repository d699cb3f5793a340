"""Resolve a source or sink object into an Endpoint: what the kernel sees behind it.

Only objects whose bytes are exactly the bytes of their fd are trusted with a
kernel route: raw fds, sockets, ``FileIO`` and the ``Buffered*`` classes over
it, ``SocketIO``. Anything else with a ``fileno()`` (``GzipFile``, a TLS
socket, someone's wrapper) may transform the bytes, so it takes the user-space
route unless it speaks the ``__zcopy__`` protocol.
"""

from __future__ import annotations

import _socket
import enum
import io
import mmap
import os
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._protocol import Handoff

_MAX_UNWRAP = 32


class Kind(enum.Enum):
    FILE = "regular file"
    SOCKET = "socket"
    PIPE = "pipe"
    DEVICE = "fd"  # character devices and anything else fstat can name
    BUFFER = "buffer"
    OBJECT = "object"


@dataclass(slots=True)
class Endpoint:
    """One side of a copy, resolved. ``label`` is what ``explain()`` prints."""

    role: str  # "src" or "dst"
    kind: Kind
    label: str
    obj: object  # the innermost object
    fd: int = -1
    offset: int | None = None  # explicit absolute offset (a section); None = current position
    size: int | None = None  # st_size of a regular file (0 for /proc and /sys files)
    limit: int | None = None
    observers: tuple[Callable[[int], object], ...] = ()
    buffer: memoryview | None = None
    timeout: float | None = None  # of a socket: None blocks, 0.0 is non-blocking
    append: bool = False
    opaque: str | None = None  # why this endpoint cannot take a kernel route
    # Set when the bytes come from an object with a position that must advance.
    position_owner: Any = None
    flush_first: Any = None  # a buffered writer to flush before the kernel writes
    readahead: Any = None  # a buffered non-seekable reader whose buffer must go first



def _kind_of_fd(fd: int, role: str) -> tuple[Kind, str, os.stat_result]:
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise ValueError(f"{role} fd {fd} is closed or invalid ({exc.strerror})") from None
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return Kind.FILE, f"a regular file (fd {fd})", st
    if stat.S_ISSOCK(mode):
        return Kind.SOCKET, f"a socket (fd {fd})", st
    if stat.S_ISFIFO(mode):
        return Kind.PIPE, f"a pipe (fd {fd})", st
    if stat.S_ISCHR(mode):
        return Kind.DEVICE, f"a character device (fd {fd})", st
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{role} fd {fd} is a directory")
    return Kind.DEVICE, f"an fd of mode {oct(stat.S_IFMT(mode))} (fd {fd})", st


_FAMILY_NAMES = {
    int(socket.AF_INET): "TCP",
    int(socket.AF_INET6): "TCP6",
    int(getattr(socket, "AF_UNIX", -1)): "Unix stream",
}
# The raw int getters: socket.socket's own properties build an enum member on every access.
_RAW_FAMILY: Any = _socket.socket.family
_RAW_TYPE: Any = _socket.socket.type


def _socket_label(sock: socket.socket) -> str:
    family = _RAW_FAMILY.__get__(sock)
    fam = _FAMILY_NAMES.get(family) or str(socket.AddressFamily(family))
    return f"a {fam} socket (fd {sock.fileno()})"


def _fd_flags(fd: int) -> int:
    import fcntl  # not at the top: it does not exist everywhere, and zcopy must import anywhere

    return int(fcntl.fcntl(fd, fcntl.F_GETFL))


def _check_access(fd: int, role: str, what: str) -> bool:
    """Check O_ACCMODE of a raw fd; return whether it is O_APPEND."""
    flags = _fd_flags(fd)
    acc = flags & os.O_ACCMODE
    if role == "src" and acc == os.O_WRONLY:
        raise io.UnsupportedOperation(f"src {what} is write-only: it cannot be read")
    if role == "dst" and acc == os.O_RDONLY:
        raise io.UnsupportedOperation(f"dst {what} is read-only: it cannot be written")
    return bool(flags & os.O_APPEND)


def _from_fd(fd: int, role: str, what: str | None = None, check_access: bool = True) -> Endpoint:
    kind, label, st = _kind_of_fd(fd, role)
    ep = Endpoint(role, kind, label if what is None else f"{what} ({label})", fd, fd=fd)
    if kind is Kind.FILE:
        ep.size = st.st_size
        if role == "src":
            ep.position_owner = fd
    if check_access and kind in (Kind.FILE, Kind.PIPE, Kind.DEVICE):
        ep.append = _check_access(fd, role, ep.label)
    if kind is Kind.SOCKET:
        probe = socket.socket(fileno=fd)
        try:
            if probe.type != socket.SOCK_STREAM:
                ep.opaque = f"{ep.label} is not a stream socket"
            ep.label = _socket_label(probe)
            ep.timeout = None if os.get_blocking(fd) else 0.0
        finally:
            probe.detach()
    return ep


def _from_socket(sock: socket.socket, role: str) -> Endpoint:
    fd = sock.fileno()
    if fd < 0:
        raise ValueError(f"{role} socket is closed")
    label = _socket_label(sock)
    ep = Endpoint(role, Kind.SOCKET, label, sock, fd=fd, timeout=sock.gettimeout())
    # Only a program that imported ssl can hold a TLS socket: no import on the hot path.
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        ep.opaque = f"{role} is a TLS socket: its bytes are encrypted in user space (no kTLS)"
        ep.kind = Kind.OBJECT
        ep.fd = -1
    elif _RAW_TYPE.__get__(sock) & 0xF != socket.SOCK_STREAM:  # low bits: SOCK_NONBLOCK etc.
        ep.opaque = f"{role} is not a stream socket ({sock.type!r})"
    return ep


_PLAIN_RAW = (io.FileIO, socket.SocketIO)
_BUFFERED = (io.BufferedReader, io.BufferedWriter, io.BufferedRandom)


def _from_file_object(f: Any, role: str) -> Endpoint:
    if f.closed:
        raise ValueError(f"{role} is a closed file")
    if role == "src" and not f.readable():
        raise io.UnsupportedOperation(f"src {type(f).__name__} is not readable (mode {_mode(f)})")
    if role == "dst" and not f.writable():
        raise io.UnsupportedOperation(f"dst {type(f).__name__} is not writable (mode {_mode(f)})")
    fd = f.fileno()
    # The object already told us its access mode: no need for fcntl.
    ep = _from_fd(fd, role, what=type(f).__name__, check_access=False)
    ep.obj = f
    if ep.kind is Kind.FILE and role == "dst":
        # The mode string misses O_APPEND set on the fd itself (open(fd, "wb")).
        ep.append = "a" in _mode(f) or bool(_fd_flags(fd) & os.O_APPEND)
    if ep.kind is Kind.SOCKET:
        raw = f.raw if isinstance(f, _BUFFERED) else f
        sock = getattr(raw, "_sock", None)
        if isinstance(sock, socket.socket):
            ep.timeout = sock.gettimeout()
    buffered = isinstance(f, _BUFFERED)
    if role == "src":
        if ep.kind is Kind.FILE:
            ep.position_owner = f
            if buffered and f.writable():
                ep.flush_first = f
        elif buffered:
            ep.readahead = f
    else:
        if buffered:
            ep.flush_first = f
        if ep.kind is Kind.FILE:
            ep.position_owner = f if buffered else None
    return ep


def _mode(f: Any) -> str:
    mode = getattr(f, "mode", None)
    return mode if isinstance(mode, str) else "?"


def _from_buffer(obj: Any, role: str) -> Endpoint:
    name = type(obj).__name__
    if isinstance(obj, io.BytesIO):
        if obj.closed:
            raise ValueError("src BytesIO is closed")
        view = obj.getbuffer()
        ep = Endpoint(role, Kind.BUFFER, f"a BytesIO ({len(view)} bytes)", obj, buffer=view)
        ep.position_owner = obj
        return ep
    view = memoryview(obj)
    if not view.c_contiguous:
        raise ValueError(f"src {name} is not a contiguous buffer")
    view = view.cast("B")
    ep = Endpoint(role, Kind.BUFFER, f"a {name} buffer ({view.nbytes} bytes)", obj, buffer=view)
    if isinstance(obj, mmap.mmap):
        ep.position_owner = obj
    return ep


def _is_buffer(obj: object) -> bool:
    if isinstance(obj, bytes | bytearray | memoryview | mmap.mmap):
        return True
    try:
        memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


_PLAIN_TYPES = frozenset({io.FileIO, socket.SocketIO})
_BUFFERED_TYPES = frozenset({io.BufferedReader, io.BufferedWriter, io.BufferedRandom})


def _classify(obj: Any, role: str) -> Endpoint:
    # Exact-type checks first: the common file objects skip the isinstance chain
    # (io.TextIOBase is an ABC, and its check alone costs more than an fstat).
    kind = type(obj)
    if kind in _PLAIN_TYPES or (kind in _BUFFERED_TYPES and type(obj.raw) in _PLAIN_TYPES):
        return _from_file_object(obj, role)
    if kind is socket.socket:
        return _from_socket(obj, role)
    if isinstance(obj, bool):
        raise TypeError(f"{role} must be a file, socket, fd, buffer or stream, not bool")
    if isinstance(obj, int):
        if obj < 0:
            raise ValueError(f"{role} fd {obj} is negative")
        return _from_fd(obj, role)
    if isinstance(obj, socket.socket):
        return _from_socket(obj, role)
    if isinstance(obj, io.TextIOBase):
        raise TypeError(
            f"{role} is a text-mode file ({type(obj).__name__}); zcopy moves bytes: "
            f"open it in binary mode ('rb'/'wb') or pass its .buffer"
        )
    if isinstance(obj, _PLAIN_RAW) or (
        isinstance(obj, _BUFFERED) and isinstance(obj.raw, _PLAIN_RAW)
    ):
        return _from_file_object(obj, role)
    if role == "src" and (isinstance(obj, io.BytesIO) or _is_buffer(obj)):
        return _from_buffer(obj, role)
    name = type(obj).__name__
    if role == "src" and not (hasattr(obj, "readinto") or hasattr(obj, "read")):
        raise TypeError(f"src {name} has no read()/readinto() and is not a buffer, file or socket")
    if role == "dst" and not hasattr(obj, "write"):
        raise TypeError(f"dst {name} has no write() and is not a file, socket or fd")
    if getattr(obj, "closed", False) is True:
        raise ValueError(f"{role} {name} is closed")
    protocol = "and does not implement the zcopy protocol (__zcopy__)"
    if isinstance(obj, io.BytesIO):
        why = "is a BytesIO: its bytes live in this process's memory"
    elif _has_usable_fileno(obj):
        why = (
            f"{name} has fileno() but is not a plain file or socket "
            f"(its bytes may differ) {protocol}"
        )
    else:
        why = f"{name} has no fileno() {protocol}"
    ep = Endpoint(role, Kind.OBJECT, f"a {name}", obj)
    ep.opaque = f"{role} {why}"
    return ep


def _has_usable_fileno(obj: Any) -> bool:
    try:
        return isinstance(obj.fileno(), int)
    except (AttributeError, OSError, ValueError):
        return False


def _compose(outer_off: int | None, outer_len: int | None, inner: Endpoint) -> None:
    """Apply an outer wrapper's offset/length on top of what the inner one resolved to."""
    if outer_off is not None:
        inner.offset = (inner.offset or 0) + outer_off
        if inner.limit is not None:
            inner.limit = max(0, inner.limit - outer_off)
    if outer_len is not None:
        inner.limit = outer_len if inner.limit is None else min(inner.limit, outer_len)


def resolve(obj: object, role: str) -> Endpoint:
    """Unwrap ``__zcopy__`` handoffs, then classify what is underneath."""
    chain: list[Handoff] = []
    names: list[str] = []
    while True:
        hook = getattr(type(obj), "__zcopy__", None)
        if hook is None:
            break
        if len(chain) >= _MAX_UNWRAP:
            raise ValueError(f"{role}: more than {_MAX_UNWRAP} nested __zcopy__ wrappers")
        handoff = hook(obj)
        if not isinstance(handoff, Handoff):
            raise TypeError(
                f"{type(obj).__name__}.__zcopy__ returned {type(handoff).__name__}, "
                "expected zcopy.Handoff"
            )
        names.append(type(obj).__name__)
        chain.append(handoff)
        obj = handoff.target
    ep = _classify(obj, role)
    observers: list[Callable[[int], object]] = []
    for handoff in reversed(chain):  # innermost first
        if handoff.offset is not None or handoff.length is not None:
            if handoff.offset is not None and role == "dst":
                # The routes write at the sink's own position: an offset would be ignored.
                raise ValueError(
                    f"dst: an offset (a section) selects bytes of a source; zcopy writes "
                    f"at the sink's own position ({ep.label}): seek it instead"
                )
            if handoff.offset is not None and ep.kind not in (Kind.FILE, Kind.BUFFER):
                raise ValueError(
                    f"{role}: a section needs a seekable file or a buffer, not {ep.label}"
                )
            _compose(handoff.offset, handoff.length, ep)
        if handoff.on_bytes is not None:
            observers.append(handoff.on_bytes)
    if ep.offset is not None:
        ep.position_owner = None  # an explicit section leaves the file position alone
    ep.observers = tuple(observers)
    if names:
        ep.label = f"{ep.label} via {' > '.join(names)}"
    return ep
