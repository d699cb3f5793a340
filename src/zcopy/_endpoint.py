"""Resolve a source or sink object into an Endpoint: what the kernel sees behind it.

Only objects whose bytes are exactly the bytes of their fd are trusted with a
kernel route, and trust goes by exact type, never ``isinstance``: raw fds,
``socket.socket``, ``FileIO`` and the ``Buffered*`` classes over it,
``SocketIO`` over a plain ``socket.socket``, and asyncio's ``TransportSocket``.
A subclass of any of them may change the bytes in its ``read()``/``send()``;
a TLS socket (or a ``makefile()``/``SocketIO`` over one) frames and encrypts
them in user space. Those, and anything else with a ``fileno()`` (``GzipFile``,
someone's wrapper), are used through the object itself, never their fd, unless
they speak the ``__zcopy__`` protocol.
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
    # Of an object endpoint over a socket (TLS, a subclass): the fd to wait on when the
    # object says it would block. Never read or written directly.
    wait_fd: int = -1
    chunk: int = 0  # most bytes per write call (a TLS record, so each send is all-or-nothing)



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
        appends = _check_access(fd, role, ep.label)
        # A pipe has no position: O_APPEND changes nothing, and splice into it is allowed.
        ep.append = appends and kind is not Kind.PIPE
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
    """An exact ``socket.socket``: its bytes are its fd's bytes."""
    fd = sock.fileno()
    if fd < 0:
        raise ValueError(f"{role} socket is closed")
    label = _socket_label(sock)
    ep = Endpoint(role, Kind.SOCKET, label, sock, fd=fd, timeout=sock.gettimeout())
    if _RAW_TYPE.__get__(sock) & 0xF != socket.SOCK_STREAM:  # low bits: SOCK_NONBLOCK etc.
        ep.opaque = f"{role} is not a stream socket ({sock.type!r})"
    return ep


# The most plaintext one TLS record carries: a send() of at most this much is one SSL_write
# of one record, which either completes or leaves nothing counted.
TLS_RECORD = 16 * 1024


def _is_tls(sock: object) -> bool:
    # Only a program that imported ssl can hold a TLS socket: no import here.
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def _from_socket_object(sock: socket.socket, via: Any, role: str) -> Endpoint:
    """A socket the core does not know byte-for-byte (TLS, a subclass), maybe behind ``via``.

    Its bytes go through the socket object (``send``/``recv_into``), or through
    ``via`` when that is a buffered reader with read-ahead, never through the fd;
    the fd is only waited on.
    """
    fd = sock.fileno()
    if fd < 0:
        raise ValueError(f"{role} socket is closed")
    tls = _is_tls(sock)
    family = _RAW_FAMILY.__get__(sock)
    fam = _FAMILY_NAMES.get(family) or str(socket.AddressFamily(family))
    name = type(sock).__name__
    label = f"a TLS {fam} socket (fd {fd})" if tls else f"a {name} ({fam} socket, fd {fd})"
    if tls:
        why = f"{role} is a TLS socket: its bytes are encrypted in user space (no kTLS)"
    else:
        why = (
            f"{role} is a {name}, a socket subclass zcopy does not know byte-for-byte: "
            f"its own send()/recv_into() move the bytes"
        )
    buffered = type(via) in _BUFFERED_TYPES
    if via is not sock:
        label = f"{type(via).__name__} ({label})"
        why += f", and {type(via).__name__} over it is used that way too, never its fd"
    ep = Endpoint(role, Kind.OBJECT, label, sock, wait_fd=fd, timeout=sock.gettimeout())
    ep.opaque = why
    if tls:
        ep.chunk = TLS_RECORD
    if role == "src":
        if buffered:
            ep.obj = via  # its read-ahead holds plaintext already taken from the socket
    elif buffered:
        ep.flush_first = via
    return ep


def _from_transport_socket(tsock: Any, role: str) -> Endpoint:
    """asyncio's ``TransportSocket``: the transport's own socket, used by its fd.

    When the running loop's transport on it is known, what would corrupt its
    stream is refused: TLS framed by the transport (plaintext would go out bare),
    unsent bytes in its buffer (they would go after ours), its own reading of a
    source (it would take bytes the copy needs).
    """
    fd = tsock.fileno()
    if fd < 0:
        raise ValueError(f"{role} TransportSocket is closed")
    what = f"{role} TransportSocket (fd {fd})"
    transport = transport_of(fd)
    if transport is not None:
        sslproto = sys.modules.get("asyncio.sslproto")
        if sslproto is not None and isinstance(transport.get_protocol(), sslproto.SSLProtocol):
            raise ValueError(
                f"{what} belongs to a TLS transport: its fd carries records the transport "
                f"encrypts; write through the transport, not its socket"
            )
        if role == "dst" and transport.get_write_buffer_size():
            raise ValueError(
                f"{what}: its transport still holds {transport.get_write_buffer_size()} "
                f"unsent bytes that would arrive after these; wait for it to drain first"
            )
        if role == "src" and transport.is_reading():
            raise ValueError(f"{what}: its transport is reading it; pause_reading() first")
    ep = _from_fd(fd, role)
    ep.label = f"TransportSocket ({ep.label})"
    ep.obj = tsock
    return ep


def transport_of(fd: int) -> Any:
    """The running selector loop's transport on ``fd``, if there is one (best effort)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:  # pragma: no cover - pytest imports asyncio: only programs without it
        return None
    loop = asyncio.events._get_running_loop()
    transports = getattr(loop, "_transports", None)  # selector loops keep fd -> transport
    return transports.get(fd) if transports is not None else None


_PLAIN_TYPES = frozenset({io.FileIO, socket.SocketIO})
# Bytes already in this process: a source is written straight from them (exact types first).
_MEMORY_TYPES = frozenset({bytes, bytearray, memoryview, io.BytesIO, mmap.mmap})
_BUFFERED_TYPES = frozenset({io.BufferedReader, io.BufferedWriter, io.BufferedRandom})
# The types zcopy knows byte-for-byte: a subclass of one of them is told apart in explain().
_KNOWN = (
    io.FileIO, socket.SocketIO, io.BufferedReader, io.BufferedWriter, io.BufferedRandom, io.BytesIO
)


def _from_file_object(f: Any, role: str) -> Endpoint:
    """An exact FileIO/SocketIO, or an exact Buffered* over one."""
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
    buffered = type(f) in _BUFFERED_TYPES
    if ep.kind is Kind.FILE and role == "dst":
        # The mode string misses O_APPEND set on the fd itself (open(fd, "wb")).
        ep.append = "a" in _mode(f) or bool(_fd_flags(fd) & os.O_APPEND)
    if ep.kind is Kind.SOCKET:
        raw = f.raw if buffered else f
        sock = getattr(raw, "_sock", None)  # a SocketIO's socket (a FileIO has none)
        if sock is not None:
            if type(sock) is not socket.socket:
                return _from_socket_object(sock, f, role)
            ep.timeout = sock.gettimeout()
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
    if type(obj) is io.BytesIO:
        if obj.closed:
            raise ValueError("src BytesIO is closed")
        # getvalue() shares the BytesIO's bytes without copying and without exporting
        # them: the BytesIO stays writable whatever happens to this copy (a later write
        # copies on write); getbuffer() would lock its size until the view is released.
        view = memoryview(obj.getvalue())
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


def _spooled(obj: object) -> bool:
    tempfile = sys.modules.get("tempfile")
    return tempfile is not None and isinstance(obj, tempfile.SpooledTemporaryFile)


def _classify(obj: Any, role: str) -> Endpoint:
    # Exact-type checks first: the common file objects skip the isinstance chain
    # (io.TextIOBase is an ABC, and its check alone costs more than an fstat).
    kind = type(obj)
    if kind in _PLAIN_TYPES or (kind in _BUFFERED_TYPES and type(obj.raw) in _PLAIN_TYPES):
        return _from_file_object(obj, role)
    if kind is socket.socket:
        return _from_socket(obj, role)
    if kind in _MEMORY_TYPES:
        if role == "src":
            return _from_buffer(obj, role)
        if kind is io.BytesIO:
            return _object(obj, role, False)
    if isinstance(obj, bool):
        raise TypeError(f"{role} must be a file, socket, fd, buffer or stream, not bool")
    if isinstance(obj, int):
        if obj < 0:
            raise ValueError(f"{role} fd {obj} is negative")
        return _from_fd(obj, role)
    if isinstance(obj, socket.socket):
        return _from_socket_object(obj, obj, role)
    trsock = sys.modules.get("asyncio.trsock")
    if trsock is not None and kind is trsock.TransportSocket:
        return _from_transport_socket(obj, role)
    if isinstance(obj, io.TextIOBase):
        raise TypeError(
            f"{role} is a text-mode file ({type(obj).__name__}); zcopy moves bytes: "
            f"open it in binary mode ('rb'/'wb') or pass its .buffer"
        )
    spooled = _spooled(obj)
    if spooled and "b" not in _mode(obj):
        raise TypeError(
            f"{role} is a text-mode SpooledTemporaryFile (mode {_mode(obj)!r}); zcopy moves "
            f"bytes: create it in binary mode ('w+b')"
        )
    if role == "src" and (kind is io.BytesIO or (not spooled and _is_buffer(obj))):
        return _from_buffer(obj, role)
    name = type(obj).__name__
    if role == "src" and not (hasattr(obj, "readinto") or hasattr(obj, "read")):
        raise TypeError(f"src {name} has no read()/readinto() and is not a buffer, file or socket")
    if role == "dst" and not hasattr(obj, "write"):
        raise TypeError(f"dst {name} has no write() and is not a file, socket or fd")
    return _object(obj, role, spooled)


def _object(obj: Any, role: str, spooled: bool) -> Endpoint:
    """An endpoint reached only through the object's own methods, with the reason why."""
    name = type(obj).__name__
    if getattr(obj, "closed", False) is True:
        raise ValueError(f"{role} {name} is closed")
    ep = Endpoint(role, Kind.OBJECT, f"a {name}", obj)
    ep.opaque = f"{role} {_why_object(obj, spooled)}"
    return ep


def _why_object(obj: Any, spooled: bool) -> str:
    """Why an object that is none of the trusted types is read or written in user space."""
    name = type(obj).__name__
    protocol = "and does not implement the zcopy protocol (__zcopy__)"
    if type(obj) is io.BytesIO:
        return "is a BytesIO: its bytes live in this process's memory"
    if spooled:  # its fileno() would roll it over to disk: never asked
        return f"is a SpooledTemporaryFile: its bytes may still be in memory {protocol}"
    base = next((b for b in _KNOWN if isinstance(obj, b)), None)
    if base is not None and type(obj) is not base:
        return (
            f"{name} is a subclass of {base.__name__}: zcopy trusts only the exact type "
            f"with its fd (a subclass may change the bytes in read()/write()) {protocol}"
        )
    if type(obj) in _BUFFERED_TYPES:
        return (
            f"{name} is over a {type(obj.raw).__name__}, not a plain file or socket "
            f"(its bytes may differ from the fd's) {protocol}"
        )
    if _has_usable_fileno(obj):
        return (
            f"{name} has fileno() but is not a plain file or socket "
            f"(its bytes may differ) {protocol}"
        )
    return f"{name} has no fileno() {protocol}"


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


def release(ep: Endpoint) -> None:
    """Give back a buffer source's view (a bytearray or mmap may be resized again)."""
    if ep.buffer is not None:
        ep.buffer.release()  # nothing has sliced it yet, and a slice never blocks this


def resolve_pair(src: object, dst: object) -> tuple[Endpoint, Endpoint]:
    """Resolve both ends; a refusal releases what the source had taken.

    One file read and written through one position is refused: each write
    would land where the next read starts (``shutil.copyfileobj(f, f)`` copies
    the file into itself in 64 KiB leaps). A socket read and written is an echo
    and is allowed; a section of the file (its own offset) is too.
    """
    src_ep = resolve(src, "src")
    try:
        dst_ep = resolve(dst, "dst")
        if (src_ep.obj is dst_ep.obj or (src_ep.fd >= 0 and src_ep.fd == dst_ep.fd)) and (
            src_ep.offset is None and src_ep.kind is not Kind.SOCKET and src_ep.wait_fd < 0
        ):
            raise ValueError(
                f"src and dst are the same {src_ep.label}: the copy would read back what it "
                f"writes through one position; open the file twice, or copy a zcopy.section()"
            )
    except BaseException:
        release(src_ep)
        raise
    return src_ep, dst_ep


# Memory character devices (/dev/null, /dev/zero, /dev/urandom...) never make a reader or
# writer wait: their major number is 1 on Linux.
_MEM_MAJOR = 1


def blocking_reason(obj: object, role: str) -> str | None:
    """Why I/O on ``obj`` could block the thread that does it; None if it cannot.

    Judged from what the kernel sees (the fd's ``O_NONBLOCK``, a socket's
    timeout), not from the Python type: a blocking socket behind ``makefile()``,
    a raw fd of a blocking pipe, a pipe opened with ``open()``. Regular files
    never wait in that sense. An object with no fd (a ``BytesIO``, a user
    object) is taken at its word. Bad objects are left for ``resolve`` to refuse.
    """
    for _ in range(_MAX_UNWRAP):
        hook = getattr(type(obj), "__zcopy__", None)
        if hook is None:
            break
        handoff = hook(obj)
        if not isinstance(handoff, Handoff):
            return None
        obj = handoff.target
    if isinstance(obj, bool):
        return None
    if isinstance(obj, int):
        return _fd_blocking(obj, f"{role} fd {obj}") if obj >= 0 else None
    if type(obj) in _BUFFERED_TYPES:
        obj = obj.raw  # type: ignore[attr-defined]
    sock = obj if isinstance(obj, socket.socket) else getattr(obj, "_sock", None)
    if isinstance(obj, socket.SocketIO | socket.socket) and isinstance(sock, socket.socket):
        if sock.gettimeout() == 0.0 or sock.fileno() < 0:
            return None
        what = "a socket" if sock is obj else f"a socket behind {type(obj).__name__}"
        return f"{role} is {what} with {_timeout_words(sock.gettimeout())}"
    if _spooled(obj) or _is_buffer(obj) or isinstance(obj, io.BytesIO):
        return None
    try:
        fd = obj.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None  # no fd: a user object, taken at its word
    if not isinstance(fd, int) or fd < 0:
        return None
    return _fd_blocking(fd, f"{role} {type(obj).__name__} (fd {fd})")


def _timeout_words(timeout: float | None) -> str:
    return "no timeout (blocking)" if timeout is None else f"a {timeout}s timeout (blocking)"


def _fd_blocking(fd: int, what: str) -> str | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None  # closed: resolve says so
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == _MEM_MAJOR:
        return None
    if _fd_flags(fd) & os.O_NONBLOCK:
        return None
    return f"{what} is a blocking {_kind_of_fd(fd, 'fd')[0].value} (O_NONBLOCK is not set)"
