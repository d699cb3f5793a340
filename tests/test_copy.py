"""zcopy.copy(): every source kind x every sink kind x count, content checked by hash.

Sizes are 300 KiB: more than a pipe or a loopback socket buffer holds, so the
EAGAIN and partial-write paths run, yet the whole matrix stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mmap
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import Drain, JustReader, start_feeding, tcp_pair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zcopy

# Every test here must leave no fd behind; fallbacks are expected, not warned about.
pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]

SIZE = 300 * 1024
DATA = os.urandom(SIZE)
PRE = 7  # bytes a BufferedReader has already handed out (its read-ahead holds more)



def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class Feeder:
    """Write bytes into a socket or fd from a thread, then close it (EOF for the reader)."""

    def __init__(self, sink: socket.socket | int, data: bytes) -> None:
        self.sink = sink
        self.data = data
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            if isinstance(self.sink, socket.socket):
                self.sink.sendall(self.data)
            else:
                view = memoryview(self.data)
                while view:
                    view = view[os.write(self.sink, view) :]
        except OSError:
            pass  # the reader gave up early: the test checks what it got
        finally:
            if isinstance(self.sink, socket.socket):
                with contextlib.suppress(OSError):
                    self.sink.shutdown(socket.SHUT_WR)
                self.sink.close()
            else:
                os.close(self.sink)

    def join(self) -> None:
        self.thread.join(30)
        assert not self.thread.is_alive(), "feeder stuck"


class ReadIntoOnly:
    """A source with nothing but readinto()."""

    def __init__(self, inner: io.BytesIO) -> None:
        self.inner = inner

    def readinto(self, buf: Any) -> int:
        return self.inner.readinto(buf)


class WriteOnly:
    """A sink with nothing but write(); takes at most 50000 bytes a call."""

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: Any) -> int:
        part = bytes(memoryview(data)[:50000])
        self.out += part
        return len(part)


@dataclass
class Source:
    obj: object
    data: bytes  # what a copy from here should yield, to EOF
    position: Callable[[], int] | None = None  # where the source's position is now
    start: int = 0  # position before the copy
    rest: Callable[[], bytes] | None = None  # what is still unread after the copy
    cleanup: list[Callable[[], object]] = field(default_factory=list)


def _file_path(tmp: Path, data: bytes) -> Path:
    path = tmp / "src.bin"
    path.write_bytes(data)
    return path


def _stream_source(make: Callable[[], tuple[Any, Any]], data: bytes, obj: Any = None) -> Source:
    reader, writer = make()
    feeder = Feeder(writer, data)
    the_obj = reader if obj is None else obj(reader)

    def rest() -> bytes:
        chunks: list[bytes] = []
        while True:
            if isinstance(reader, socket.socket):
                chunk = reader.recv(1 << 20)
            else:
                chunk = os.read(reader, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def close() -> None:
        if isinstance(reader, socket.socket):
            reader.close()
        else:
            os.close(reader)
        feeder.join()

    return Source(the_obj, data, rest=rest, cleanup=[close])


def _unix_pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def make_source(kind: str, tmp: Path, data: bytes = DATA) -> Source:
    if kind == "file":
        f = open(_file_path(tmp, data), "rb")  # noqa: SIM115
        return Source(f, data, f.tell, 0, f.read, [f.close])
    if kind == "buffered-readahead":
        f = open(_file_path(tmp, data), "rb")  # noqa: SIM115
        assert f.read(PRE) == data[:PRE]  # the BufferedReader now holds 8 KiB read-ahead
        return Source(f, data[PRE:], f.tell, PRE, f.read, [f.close])
    if kind == "raw-fd":
        fd = os.open(_file_path(tmp, data), os.O_RDONLY)
        os.lseek(fd, 3, os.SEEK_SET)

        def rest_fd() -> bytes:
            return os.pread(fd, SIZE * 2, os.lseek(fd, 0, os.SEEK_CUR))

        return Source(
            fd, data[3:], lambda: os.lseek(fd, 0, os.SEEK_CUR), 3, rest_fd, [lambda: os.close(fd)]
        )
    if kind == "fileio":
        raw = io.FileIO(_file_path(tmp, data), "r")
        return Source(raw, data, raw.tell, 0, raw.readall, [raw.close])
    if kind == "tcp":
        return _stream_source(lambda: tcp_pair(), data)
    if kind == "unix":
        return _stream_source(_unix_pair, data)
    if kind == "pipe":
        return _stream_source(os.pipe, data)
    if kind == "bytes":
        return Source(bytes(data), data)
    if kind == "bytearray":
        return Source(bytearray(data), data)
    if kind == "memoryview":
        return Source(memoryview(data), data)
    if kind == "mmap":
        f = open(_file_path(tmp, data), "rb")  # noqa: SIM115
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        m.seek(5)
        return Source(m, data[5:], m.tell, 5, m.read, [m.close, f.close])
    if kind == "bytesio":
        b = io.BytesIO(data)
        b.seek(11)
        return Source(b, data[11:], b.tell, 11, b.read)
    if kind == "readinto-only":
        inner = io.BytesIO(data)
        return Source(ReadIntoOnly(inner), data, inner.tell, 0, inner.read)
    if kind == "read-only":
        inner = io.BytesIO(data)
        return Source(JustReader(inner), data, inner.tell, 0, inner.read)
    raise AssertionError(kind)


SOURCES = [
    "file", "buffered-readahead", "raw-fd", "fileio", "tcp", "unix", "pipe",
    "bytes", "bytearray", "memoryview", "mmap", "bytesio", "readinto-only", "read-only",
]


@dataclass
class Sink:
    obj: object
    finish: Callable[[], bytes]  # close the writing side; return every byte that arrived
    cleanup: list[Callable[[], object]] = field(default_factory=list)


def _socket_sink(a: socket.socket, b: socket.socket) -> Sink:
    drain = Drain(b)

    def finish() -> bytes:
        a.shutdown(socket.SHUT_WR)
        return drain.result(30)

    return Sink(a, finish, [a.close, b.close])


def make_sink(kind: str, tmp: Path) -> Sink:
    if kind == "tcp":
        return _socket_sink(*tcp_pair())
    if kind == "unix":
        return _socket_sink(*_unix_pair())
    if kind == "file":
        path = tmp / "dst.bin"
        f = open(path, "wb")  # noqa: SIM115

        def finish_file() -> bytes:
            f.close()
            return path.read_bytes()

        return Sink(f, finish_file, [f.close])
    if kind == "pipe":
        r, w = os.pipe()
        drain = Drain(r)
        closed = []

        def finish_pipe() -> bytes:
            os.close(w)
            closed.append(w)
            return drain.result(30)

        def close_pipe() -> None:
            if not closed:
                os.close(w)
            drain.thread.join(30)
            os.close(r)

        return Sink(w, finish_pipe, [close_pipe])
    if kind == "bytesio":
        b = io.BytesIO()
        return Sink(b, b.getvalue)
    if kind == "write-only":
        w_obj = WriteOnly()
        return Sink(w_obj, lambda: bytes(w_obj.out))
    raise AssertionError(kind)


SINKS = ["tcp", "unix", "file", "pipe", "bytesio", "write-only"]


@contextlib.contextmanager
def ends(src: Source, dst: Sink) -> Iterator[None]:
    try:
        yield
    finally:
        for fn in dst.cleanup + src.cleanup:
            fn()


def expected_for(data: bytes, count: int | None) -> bytes:
    return data if count is None else data[:count]


COUNTS = {"none": None, "zero": 0, "one": 1, "exact": "exact", "beyond": "beyond"}


def resolve_count(label: str, src: Source) -> int | None:
    c = COUNTS[label]
    if c == "exact":
        return len(src.data)
    if c == "beyond":
        return len(src.data) + 12345
    return c  # type: ignore[return-value]


BUFFERS = {"bytes", "bytearray", "memoryview", "mmap", "bytesio"}
FILES = {"file", "buffered-readahead", "raw-fd", "fileio"}
STREAMS = {"tcp", "unix", "pipe"}
OPAQUE_SOURCES = {"readinto-only", "read-only"}
OPAQUE_SINKS = {"bytesio", "write-only"}
assert set(SOURCES) == BUFFERS | FILES | STREAMS | OPAQUE_SOURCES


def expected_route(src_kind: str, sink_kind: str) -> tuple[zcopy.Route, zcopy.Fallback | None]:
    """The route a cell must take, and the fallback on the way there (docs/design.md)."""
    if src_kind in BUFFERS:  # already in memory: one write whatever the sink, no fallback
        return zcopy.Route.WRITE, None
    if src_kind in OPAQUE_SOURCES:
        return zcopy.Route.USERSPACE, zcopy.Fallback.SRC_OPAQUE
    if sink_kind in OPAQUE_SINKS:
        return zcopy.Route.USERSPACE, zcopy.Fallback.DST_OPAQUE
    if src_kind in STREAMS:
        return zcopy.Route.SPLICE, None
    if sink_kind == "file":
        return zcopy.Route.COPY_FILE_RANGE, None
    return zcopy.Route.SENDFILE, None


def stats_delta(
    before: zcopy.Stats, after: zcopy.Stats
) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """(route -> (copies, bytes), fallback -> count) that happened between two snapshots."""
    none = zcopy.RouteStats()
    routes = {
        name: (r.calls - before.routes.get(name, none).calls,
               r.bytes - before.routes.get(name, none).bytes)
        for name, r in after.routes.items()
        if r != before.routes.get(name, none)
    }
    fallbacks = {
        code: n - before.fallbacks.get(code, 0)
        for code, n in after.fallbacks.items()
        if n != before.fallbacks.get(code, 0)
    }
    return routes, fallbacks


@pytest.mark.parametrize("count", list(COUNTS))
@pytest.mark.parametrize("sink_kind", SINKS)
@pytest.mark.parametrize("src_kind", SOURCES)
def test_matrix(tmp_path: Path, src_kind: str, sink_kind: str, count: str) -> None:
    src = make_source(src_kind, tmp_path)
    dst = make_sink(sink_kind, tmp_path)
    route, fallback = expected_route(src_kind, sink_kind)
    with ends(src, dst):
        n_arg = resolve_count(count, src)
        want = expected_for(src.data, n_arg)
        before = zcopy.stats()
        n = zcopy.copy(dst.obj, src.obj, n_arg)
        routes, fallbacks = stats_delta(before, zcopy.stats())
        assert n == len(want)
        # The route, from the process's own counters (as Go's tests check expectSendfile);
        # the strace proofs in test_routes_proof.py witness the same from outside.
        assert routes == {route.value: (1, n)}, (route, routes)
        assert fallbacks == ({fallback.value: 1} if fallback else {}), fallbacks
        if src.position is not None:
            assert src.position() == src.start + n, "position must advance by the bytes copied"
        if src.rest is not None:
            assert sha(src.rest()) == sha(src.data[n:]), "nothing past count may be consumed"
        got = dst.finish()
        assert len(got) == len(want)
        assert sha(got) == sha(want)


# -- blocking, timeout and non-blocking socket ends ------------------------------------------

MODES = {"blocking": None, "timeout": 10.0, "nonblocking": 0.0}


def _set_mode(sock: socket.socket, mode: str) -> None:
    sock.settimeout(MODES[mode])


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("sink_kind", ["tcp", "file", "pipe", "bytesio"])
@pytest.mark.parametrize("src_kind", ["tcp", "unix"])
def test_socket_source_modes(tmp_path: Path, src_kind: str, sink_kind: str, mode: str) -> None:
    src = make_source(src_kind, tmp_path)
    assert isinstance(src.obj, socket.socket)
    _set_mode(src.obj, mode)
    dst = make_sink(sink_kind, tmp_path)
    route, _ = expected_route(src_kind, sink_kind)
    with ends(src, dst):
        before = zcopy.stats()
        assert zcopy.copy(dst.obj, src.obj) == SIZE
        assert stats_delta(before, zcopy.stats())[0] == {route.value: (1, SIZE)}
        assert sha(dst.finish()) == sha(DATA)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("src_kind", ["file", "bytes", "tcp", "pipe", "read-only"])
@pytest.mark.parametrize("sink_kind", ["tcp", "unix"])
def test_socket_sink_modes(tmp_path: Path, src_kind: str, sink_kind: str, mode: str) -> None:
    src = make_source(src_kind, tmp_path)
    dst = make_sink(sink_kind, tmp_path)
    assert isinstance(dst.obj, socket.socket)
    _set_mode(dst.obj, mode)
    route, _ = expected_route(src_kind, sink_kind)
    with ends(src, dst):
        before = zcopy.stats()
        assert zcopy.copy(dst.obj, src.obj, SIZE - 100) == SIZE - 100
        assert stats_delta(before, zcopy.stats())[0] == {route.value: (1, SIZE - 100)}
        assert sha(dst.finish()) == sha(DATA[: SIZE - 100])


@pytest.mark.parametrize("mode", list(MODES))
def test_socket_to_socket_both_modes(mode: str) -> None:
    a, a_peer = tcp_pair()
    b, b_peer = tcp_pair()
    with a, a_peer, b, b_peer:
        _set_mode(a, mode)
        _set_mode(b, mode)
        feeder = Feeder(a_peer.dup(), DATA)
        drain = Drain(b_peer)
        assert zcopy.copy(b, a) == SIZE
        b.shutdown(socket.SHUT_WR)
        assert sha(drain.result(30)) == sha(DATA)
        feeder.join()


def test_socket_makefile_source_with_readahead() -> None:
    """A buffered reader over a socket that already read ahead: its buffer goes first."""
    a, peer = tcp_pair()
    with a, peer:
        peer.sendall(DATA)
        peer.shutdown(socket.SHUT_WR)
        f = a.makefile("rb")
        with f:
            assert f.read(PRE) == DATA[:PRE]
            out = io.BytesIO()
            assert zcopy.copy(out, f) == SIZE - PRE
            assert sha(out.getvalue()) == sha(DATA[PRE:])


def test_pipe_reader_with_big_readahead(tmp_path: Path) -> None:
    """A BufferedReader over a pipe whose read-ahead exceeds one chunk loses nothing."""
    import fcntl

    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
    os.write(w, DATA)  # all of it sits in the pipe: the first raw read takes 256 KiB
    os.close(w)
    f = open(r, "rb", buffering=256 * 1024)  # noqa: SIM115
    with f:
        first = f.read(1)
        sink = make_sink("tcp", tmp_path)
        with contextlib.ExitStack() as stack:
            for fn in sink.cleanup:
                stack.callback(fn)
            assert zcopy.copy(sink.obj, f) == SIZE - 1
            assert sha(first + sink.finish()) == sha(DATA)


# -- sinks that are buffered writers with pending data ---------------------------------------


def test_buffered_file_sink_pending_data_flushed_in_order(tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.write_bytes(DATA)
    path = tmp_path / "d"
    with open(path, "wb") as f, open(src, "rb") as s:
        f.write(b"head")  # still in the BufferedWriter
        assert zcopy.copy(f, s) == SIZE
        f.write(b"tail")
        assert f.tell() == SIZE + 8
    assert path.read_bytes() == b"head" + DATA + b"tail"


def test_buffered_random_sink_with_readahead(tmp_path: Path) -> None:
    """An r+b file that read ahead: the kernel writes where the object's position is."""
    path = tmp_path / "d"
    path.write_bytes(b"x" * 100)
    with open(path, "r+b") as f:
        assert f.read(10) == b"x" * 10  # raw position is now 100, logical 10
        assert zcopy.copy(f, b"hello") == 5
        assert f.tell() == 15
    assert path.read_bytes() == b"x" * 10 + b"hello" + b"x" * 85


def test_buffered_random_file_source_with_pending_writes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with open(path, "w+b") as f:
        f.write(DATA)  # partly still in the buffer
        f.seek(0)
        out = io.BytesIO()
        sock_a, sock_b = tcp_pair()
        with sock_a, sock_b:
            drain = Drain(sock_b)
            assert zcopy.copy(sock_a, f) == SIZE
            sock_a.shutdown(socket.SHUT_WR)
            out.write(drain.result(30))
        assert f.tell() == SIZE
    assert sha(out.getvalue()) == sha(DATA)


@pytest.mark.parametrize("kind", ["pipe", "socket"])
def test_buffered_stream_sink_flushed_in_order(kind: str) -> None:
    if kind == "pipe":
        r, w = os.pipe()
        drain = Drain(r)
        f = open(w, "wb")  # noqa: SIM115
        closer: Callable[[], object] = lambda: None  # noqa: E731
    else:
        a, b = tcp_pair()
        drain = Drain(b)
        f = a.makefile("wb")

        def closer() -> None:
            a.shutdown(socket.SHUT_WR)
            a.close()

    f.write(b"head")
    assert zcopy.copy(f, DATA) == SIZE
    f.write(b"tail")
    f.close()
    closer()
    got = drain.result(30)
    if kind == "pipe":
        os.close(r)
    else:
        b.close()
    assert got == b"head" + DATA + b"tail"


# -- sections and counts under hypothesis ----------------------------------------------------

_BLOB = os.urandom(200 * 1024)


@pytest.fixture(scope="module")
def blob_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hyp") / "blob"
    path.write_bytes(_BLOB)
    return path


_HYP = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_offsets = st.integers(min_value=0, max_value=len(_BLOB) + 5000)
_lengths = st.none() | st.integers(min_value=0, max_value=len(_BLOB) + 5000)


@_HYP
@given(offset=_offsets, length=_lengths, count=_lengths, start=_offsets)
def test_section_hypothesis(
    blob_path: Path, offset: int, length: int | None, count: int | None, start: int
) -> None:
    want = _BLOB[offset:][:length][:count]
    with open(blob_path, "rb") as f:
        f.seek(start)
        for dst_kind in ("bytesio", "file"):
            if dst_kind == "bytesio":
                out = io.BytesIO()
                assert zcopy.copy(out, zcopy.section(f, offset, length), count) == len(want)
                got = out.getvalue()
            else:
                dpath = blob_path.with_name("out")
                with open(dpath, "wb") as d:
                    assert zcopy.copy(d, zcopy.section(f, offset, length), count) == len(want)
                got = dpath.read_bytes()
            assert got == want
            assert f.tell() == start, "a section leaves the file position alone"
    out = io.BytesIO()
    assert zcopy.copy(out, zcopy.section(_BLOB, offset, length), count) == len(want)
    assert out.getvalue() == want


@_HYP
@given(start=_offsets, count=_lengths)
def test_count_and_position_hypothesis(blob_path: Path, start: int, count: int | None) -> None:
    want = _BLOB[start:][:count]
    a, b = tcp_pair()
    with a, b, open(blob_path, "rb") as f:
        f.seek(start)
        drain = Drain(b)
        assert zcopy.copy(a, f, count) == len(want)
        assert f.tell() == start + len(want)
        a.shutdown(socket.SHUT_WR)
        assert drain.result(30) == want


@pytest.mark.parametrize("src_kind", ["file", "bytes", "tcp", "pipe", "read-only"])
@pytest.mark.parametrize("dst_kind", ["raw-fd", "fileio"])
def test_file_sink_position_advances(tmp_path: Path, src_kind: str, dst_kind: str) -> None:
    """Whatever the route, the sink file's own position ends after the bytes written."""
    src = make_source(src_kind, tmp_path)
    path = tmp_path / "dst.bin"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_WRONLY)
    os.lseek(fd, 4, os.SEEK_SET)
    dst: object = fd if dst_kind == "raw-fd" else io.FileIO(fd, "w", closefd=False)
    route, _ = expected_route(src_kind, "file")  # a raw fd or FileIO on a file is a file
    try:
        with ends(src, Sink(dst, lambda: b"")):
            before = zcopy.stats()
            n = zcopy.copy(dst, src.obj, 1000)
            assert stats_delta(before, zcopy.stats())[0] == {route.value: (1, 1000)}
        assert n == 1000
        assert os.lseek(fd, 0, os.SEEK_CUR) == 1004
    finally:
        os.close(fd)
    assert path.read_bytes() == b"0123" + src.data[:1000]


def test_buffer_size_sets_the_user_space_chunk(tmp_path: Path) -> None:
    """``buffer_size`` is how much each user-space read asks for; bad sizes are refused."""
    asked: list[int] = []

    class Reader(ReadIntoOnly):
        def readinto(self, b: Any) -> int:
            asked.append(len(b))
            return super().readinto(b)

    data = os.urandom(10_000)
    out = io.BytesIO()
    assert zcopy.copy(out, Reader(io.BytesIO(data)), buffer_size=4096) == len(data)
    assert out.getvalue() == data
    assert asked[:3] == [4096, 4096, 4096]
    for bad, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error) as info:
            zcopy.copy(io.BytesIO(), b"abc", buffer_size=bad)  # type: ignore[arg-type]
        assert info.value.bytes_copied == 0  # type: ignore[attr-defined]


def test_blocking_copy_waits_on_the_source_then_on_the_sink() -> None:
    """Socket to socket, both non-blocking: the source is empty at first (wait to read), then
    the sink is full while its reader is late (wait to write). Every byte arrives, in order."""
    x, src = tcp_pair()
    dst, y = tcp_pair()
    payload = os.urandom(4 << 20)
    with x, src, dst, y:
        src.setblocking(False)
        dst.setblocking(False)
        late = [threading.Timer(0.1, lambda: start_feeding(x, payload))]
        drains: list[Drain] = []
        late.append(threading.Timer(0.5, lambda: drains.append(Drain(y))))
        for timer in late:
            timer.start()
        assert zcopy.copy(dst, src) == len(payload)
        for timer in late:
            timer.join(10)
        dst.shutdown(socket.SHUT_WR)
        assert drains[0].result(30) == payload


def test_a_sink_that_keeps_the_views_it_was_given_does_not_break_the_copy() -> None:
    """The source's view is released at the end even while slices of it live on (in a sink,
    a traceback): a slice never blocks the release. Once the sink lets go, it resizes again."""

    class Keeper:
        def __init__(self) -> None:
            self.kept: list[memoryview] = []

        def write(self, data: memoryview) -> int:
            self.kept.append(memoryview(data))  # an export of the slice it was handed
            return min(len(data), 7)  # small writes: many slices

    src = bytearray(b"0123456789" * 5)
    sink = Keeper()
    assert zcopy.copy(sink, src) == 50
    assert b"".join(bytes(v[:7]) for v in sink.kept)[:50] == bytes(src)
    for view in sink.kept:
        view.release()
    src += b"more"  # not exported any more: the copy gave its own view back
    assert len(src) == 54
