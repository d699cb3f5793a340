"""Bad input and failures: each has one defined outcome, and errors mid-copy carry the count."""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Drain, JustReader, start_feeding, tcp_pair

import zcopy

# Every test here must leave no fd behind; fallbacks are expected, not warned about.
pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]

DATA = os.urandom(300 * 1024)



# -- refused before anything moves ------------------------------------------------------------


def test_text_mode_source_and_sink(src_file: Path, tmp_path: Path) -> None:
    with open(src_file) as text, pytest.raises(TypeError, match="text-mode"):
        zcopy.copy(io.BytesIO(), text)
    with open(tmp_path / "out", "w") as text, pytest.raises(TypeError, match="binary mode"):
        zcopy.copy(text, b"abc")
    with pytest.raises(TypeError, match="text-mode"):
        zcopy.copy(io.BytesIO(), io.StringIO("abc"))


def test_closed_file_socket_fd(src_file: Path) -> None:
    f = open(src_file, "rb")  # noqa: SIM115
    f.close()
    with pytest.raises(ValueError, match="closed"):
        zcopy.copy(io.BytesIO(), f)
    with pytest.raises(ValueError, match="closed"):
        zcopy.copy(f, b"x")
    s = socket.socket()
    s.close()
    with pytest.raises(ValueError, match="closed"):
        zcopy.copy(s, b"x")
    with pytest.raises(ValueError, match="closed"):
        zcopy.copy(io.BytesIO(), s)
    fd = os.open(src_file, os.O_RDONLY)
    os.close(fd)
    with pytest.raises(ValueError, match="closed or invalid"):
        zcopy.copy(io.BytesIO(), fd)
    b = io.BytesIO(b"abc")
    b.close()
    with pytest.raises(ValueError, match="closed"):
        zcopy.copy(io.BytesIO(), b)
    with pytest.raises(ValueError, match="closed"):
        zcopy.copy(b, b"x")


@pytest.mark.parametrize("count", [-1, -(2**70)])
def test_negative_count(count: int) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        zcopy.copy(io.BytesIO(), b"abc", count)
    with pytest.raises(ValueError, match=">= 0"):
        zcopy.explain(io.BytesIO(), b"abc", count)


@pytest.mark.parametrize("count", [True, False, "3", 3.0, b"3"])
def test_count_wrong_type(count: object) -> None:
    with pytest.raises(TypeError, match="count must be an int"):
        zcopy.copy(io.BytesIO(), b"abc", count)  # type: ignore[arg-type]


@pytest.mark.parametrize("sink", ["tcp", "file", "bytesio", "pipe"])
def test_huge_count_copies_to_eof(src_file: Path, tmp_path: Path, sink: str) -> None:
    with open(src_file, "rb") as f:
        assert _copy_into(sink, f, tmp_path, 2**70) == DATA
        assert f.tell() == len(DATA)


def test_huge_count_from_socket_and_buffer() -> None:
    out = io.BytesIO()
    assert zcopy.copy(out, DATA, 2**70) == len(DATA)
    a, b = tcp_pair()
    c, d = tcp_pair()
    with a, b, c, d:
        b.sendall(DATA)
        b.shutdown(socket.SHUT_WR)
        drain = Drain(d)
        assert zcopy.copy(c, a, 2**70) == len(DATA)
        c.shutdown(socket.SHUT_WR)
        assert drain.result(30) == DATA


def test_count_beyond_eof_returns_what_exists(src_file: Path) -> None:
    a, b = tcp_pair()
    with a, b, open(src_file, "rb") as f:
        f.seek(1000)
        drain = Drain(b)
        assert zcopy.copy(a, f, len(DATA)) == len(DATA) - 1000
        a.shutdown(socket.SHUT_WR)
        assert drain.result(30) == DATA[1000:]


def test_write_only_source(src_file: Path, tmp_path: Path) -> None:
    with open(tmp_path / "w", "wb") as f, pytest.raises(io.UnsupportedOperation, match="readable"):
        zcopy.copy(io.BytesIO(), f)
    fd = os.open(src_file, os.O_WRONLY)
    try:
        with pytest.raises(io.UnsupportedOperation, match="write-only"):
            zcopy.copy(io.BytesIO(), fd)
    finally:
        os.close(fd)
    r, w = os.pipe()
    try:
        with pytest.raises(io.UnsupportedOperation, match="write-only"):
            zcopy.copy(io.BytesIO(), w)
    finally:
        os.close(r)
        os.close(w)


def test_read_only_sink(src_file: Path) -> None:
    with open(src_file, "rb") as f, pytest.raises(io.UnsupportedOperation, match="writable"):
        zcopy.copy(f, b"abc")
    fd = os.open(src_file, os.O_RDONLY)
    r, w = os.pipe()
    try:
        with pytest.raises(io.UnsupportedOperation, match="read-only"):
            zcopy.copy(fd, b"abc")
        with pytest.raises(io.UnsupportedOperation, match="read-only"):
            zcopy.copy(r, b"abc")
    finally:
        for x in (fd, r, w):
            os.close(x)
    assert src_file.read_bytes() == DATA


def test_directory_and_objects_without_io(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(IsADirectoryError):
            zcopy.copy(io.BytesIO(), fd)
    finally:
        os.close(fd)
    with pytest.raises(TypeError, match="no read"):
        zcopy.copy(io.BytesIO(), object())
    with pytest.raises(TypeError, match="no write"):
        zcopy.copy(object(), b"abc")
    with pytest.raises(ValueError, match="negative"):
        zcopy.copy(io.BytesIO(), -3)


# -- pseudo-files: size 0 (or 4096) but content ----------------------------------------------


def _copy_into(sink: str, src: object, tmp_path: Path, count: int | None = None) -> bytes:
    if sink == "tcp":
        a, b = tcp_pair()
        with a, b:
            drain = Drain(b)
            zcopy.copy(a, src, count)
            a.shutdown(socket.SHUT_WR)
            return drain.result(30)
    if sink == "pipe":
        r, w = os.pipe()
        drain = Drain(r)
        try:
            zcopy.copy(w, src, count)
        finally:
            os.close(w)
        try:
            return drain.result(30)
        finally:
            os.close(r)
    if sink == "file":
        path = tmp_path / "sink.bin"
        with open(path, "wb") as out:
            zcopy.copy(out, src, count)
        return path.read_bytes()
    out_b = io.BytesIO()
    zcopy.copy(out_b, src, count)
    return out_b.getvalue()


SYS_FILE = "/sys/devices/system/cpu/online"


@pytest.mark.parametrize("sink", ["file", "pipe", "tcp", "bytesio"])
def test_proc_self_status_content_is_copied(sink: str, tmp_path: Path) -> None:
    assert os.stat("/proc/self/status").st_size == 0
    with open("/proc/self/status", "rb") as f:
        got = _copy_into(sink, f, tmp_path)
    assert got.startswith(b"Name:\t")
    assert f"\nPid:\t{os.getpid()}\n".encode() in got
    assert got.endswith(b"\n")


@pytest.mark.parametrize("sink", ["file", "pipe", "tcp", "bytesio"])
@pytest.mark.parametrize("path", ["/proc/version", SYS_FILE])
def test_stable_pseudo_file_copied_exactly(sink: str, path: str, tmp_path: Path) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    with open(path, "rb") as f:
        expected = f.read()
    assert expected
    with open(path, "rb") as f:
        assert _copy_into(sink, f, tmp_path) == expected
        assert f.tell() == len(expected)


@pytest.mark.parametrize("sink", ["tcp", "file"])
def test_empty_regular_file_is_not_a_fallback(tmp_path: Path, sink: str) -> None:
    """An honest empty file copies 0 bytes, in strict mode too: no fast path was lost."""
    path = tmp_path / "empty"
    path.write_bytes(b"")
    zcopy.reset_stats()
    with open(path, "rb") as f:
        assert _copy_into(sink, f, tmp_path) == b""
    with open(path, "rb") as f:
        a, b = tcp_pair()
        with a, b:
            assert zcopy.copy(a, f, require_zero_copy=True) == 0
    s = zcopy.stats()
    assert s.fallbacks == {}
    assert "userspace" not in s.routes


# -- the peer goes away mid-copy ---------------------------------------------------------------


BIG = 8 << 20


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.write(os.urandom(1 << 20) * 8)
    return path


def _close_after(sock: socket.socket, nbytes: int) -> threading.Thread:
    """Read nbytes, then close with unread data (an RST for the sender)."""

    def run() -> None:
        got = 0
        while got < nbytes:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += len(chunk)
        sock.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _assert_peer_gone(info: pytest.ExceptionInfo[BaseException], limit: int) -> None:
    assert isinstance(info.value, BrokenPipeError | ConnectionResetError)
    copied: int = getattr(info.value, "bytes_copied")  # noqa: B009 - zcopy sets it on OSErrors
    assert 100_000 <= copied < limit


@pytest.mark.parametrize("src_kind", ["file", "bytes", "tcp", "read-only"])
def test_tcp_peer_closes_mid_copy(big_file: Path, src_kind: str) -> None:
    a, b = _slow_pair()  # small buffers: the copy cannot finish early
    with contextlib.ExitStack() as stack:
        stack.enter_context(a)
        src = _big_source(src_kind, big_file, stack)
        reader = _close_after(b, 100_000)
        with pytest.raises(OSError) as info:
            zcopy.copy(a, src)
        reader.join(30)
        _assert_peer_gone(info, BIG)


def _big_source(kind: str, big_file: Path, stack: contextlib.ExitStack) -> object:
    """BIG bytes as a ``kind`` source whose ends ``stack`` closes (a feeder thread for tcp)."""
    if kind == "file":
        return stack.enter_context(open(big_file, "rb"))
    if kind == "bytes":
        return big_file.read_bytes()
    if kind == "read-only":
        return JustReader(big_file.read_bytes())
    assert kind == "tcp", kind
    src, feed = tcp_pair()
    stack.enter_context(src)
    stack.enter_context(feed)
    feeder = start_feeding(feed, os.urandom(BIG))
    stack.callback(feeder.join, 30)
    stack.callback(src.close)  # unblocks the feeder before it is joined
    return src


def test_pipe_reader_closes_mid_copy(big_file: Path) -> None:
    r, w = os.pipe()
    try:
        got = 0

        def reader() -> None:
            nonlocal got
            while got < 100_000:
                got += len(os.read(r, 65536))
            os.close(r)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        with open(big_file, "rb") as f, pytest.raises(BrokenPipeError) as info:
            zcopy.copy(w, f)
        t.join(30)
        copied = info.value.bytes_copied  # type: ignore[attr-defined]
        assert got <= copied < BIG
    finally:
        os.close(w)


# -- a file that shrinks during sendfile --------------------------------------------------------


def _slow_pair() -> tuple[socket.socket, socket.socket]:
    """A TCP pair with small buffers, so little is in flight while the reader stalls."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        client.connect(server.getsockname())
        peer, _ = server.accept()
    return client, peer


@pytest.mark.parametrize("new_size", [2 << 20, 0])
def test_file_shrinks_during_sendfile(big_file: Path, new_size: int) -> None:
    data = big_file.read_bytes()
    a, b = _slow_pair()
    received = bytearray()

    def reader() -> None:
        # Stall after 256 KiB, shrink the file, then read on to EOF.
        while len(received) < 256 * 1024:
            received.extend(b.recv(65536))
        os.truncate(big_file, new_size)
        while chunk := b.recv(1 << 20):
            received.extend(chunk)

    with a, b, open(big_file, "rb") as f:
        assert zcopy.explain(a, f).route is zcopy.Route.SENDFILE
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        n = zcopy.copy(a, f)
        a.shutdown(socket.SHUT_WR)
        t.join(30)
        assert not t.is_alive()
        assert f.tell() == n
    assert n == len(received), "the count is what the peer got"
    assert bytes(received) == data[:n], "never padded"
    if new_size:
        assert n == new_size
    else:
        assert 256 * 1024 <= n < 2 << 20


# -- O_APPEND sinks --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["file-object", "raw-fd", "fd-flag-under-wb"])
def test_append_sink(src_file: Path, tmp_path: Path, how: str) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"existing\n")
    zcopy.reset_stats()
    with contextlib.ExitStack() as stack:
        if how == "file-object":
            dst: object = stack.enter_context(open(path, "ab"))
        elif how == "fd-flag-under-wb":
            # The mode string says "wb"; only the fd's flags know it appends.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            dst = stack.enter_context(open(fd, "wb"))
        else:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            stack.callback(os.close, fd)
            os.lseek(fd, 0, os.SEEK_SET)  # O_APPEND writes at the end regardless
            dst = fd
        f = stack.enter_context(open(src_file, "rb"))
        plan = zcopy.explain(dst, f)
        assert plan.route is zcopy.Route.USERSPACE
        assert "O_APPEND" in str(plan)
        assert zcopy.copy(dst, f) == len(DATA)
    assert path.read_bytes() == b"existing\n" + DATA
    s = zcopy.stats()
    assert s.routes["userspace"].bytes == len(DATA)
    assert s.fallbacks == {"dst-append": 1}


# -- EINTR ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _signal_storm() -> Iterator[list[int]]:
    """Interrupt the main thread with SIGUSR1 every millisecond (like a repeating itimer,
    but aimed at the copying thread and leaving pytest-timeout's SIGALRM alone)."""
    fired: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda *_: fired.append(1))
    stop = threading.Event()
    main = threading.get_ident()

    def tick() -> None:
        while not stop.wait(0.001):
            signal.pthread_kill(main, signal.SIGUSR1)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield fired
    finally:
        stop.set()
        ticker.join(10)
        signal.signal(signal.SIGUSR1, old)


def _drain_after_signals(sock: socket.socket, out: bytearray, fired: list[int]) -> threading.Thread:
    def run() -> None:
        # Stall until the blocked copy has been interrupted a few times, then read.
        deadline = time.monotonic() + 20
        while len(fired) < 5 and time.monotonic() < deadline:
            time.sleep(0.002)
        while chunk := sock.recv(65536):
            out.extend(chunk)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("src_kind", ["file", "bytes", "tcp", "read-only"])
@pytest.mark.parametrize("timeout", [None, 30.0])
def test_eintr_is_retried(src_file: Path, src_kind: str, timeout: float | None) -> None:
    data = os.urandom(1 << 20) * 8  # far more than the small socket buffers hold
    a, b = _slow_pair()
    a.settimeout(timeout)
    received = bytearray()
    with contextlib.ExitStack() as stack:
        stack.enter_context(a)
        stack.enter_context(b)
        if src_kind == "file":
            src_file.write_bytes(data)
            src: object = stack.enter_context(open(src_file, "rb"))
        elif src_kind == "bytes":
            src = data
        elif src_kind == "read-only":
            src = JustReader(data)
        else:
            c, d = tcp_pair()
            stack.enter_context(c)
            stack.enter_context(d)
            feeder = start_feeding(d, data)
            stack.callback(feeder.join, 30)
            src = c
        with _signal_storm() as fired:
            reader = _drain_after_signals(b, received, fired)
            n = zcopy.copy(a, src)
        a.shutdown(socket.SHUT_WR)
        reader.join(30)
    assert len(fired) >= 5, "the copy was not interrupted: the test proved nothing"
    assert n == len(data)
    assert bytes(received) == data


# -- timeouts and non-blocking sockets ----------------------------------------------------------


@pytest.mark.parametrize("src_kind", ["file", "bytes", "tcp"])
def test_timeout_when_peer_never_reads(big_file: Path, src_kind: str) -> None:
    a, b = _slow_pair()  # small buffers: the copy cannot finish early
    a.settimeout(0.3)
    with contextlib.ExitStack() as stack:
        stack.enter_context(a)
        stack.enter_context(b)
        src = _big_source(src_kind, big_file, stack)
        with pytest.raises(TimeoutError) as info:
            zcopy.copy(a, src)
        copied: int = getattr(info.value, "bytes_copied")  # noqa: B009
        assert 0 < copied < BIG
        if isinstance(src, io.BufferedReader):
            assert src.tell() == copied
        # What the peer can still read is exactly what was reported.
        a.shutdown(socket.SHUT_WR)
        drain = Drain(b)
        assert len(drain.result(30)) == copied


def test_timeout_when_source_is_silent() -> None:
    a, b = tcp_pair()
    a.settimeout(0.2)
    with a, b, pytest.raises(TimeoutError, match="to have data") as info:
        zcopy.copy(io.BytesIO(), a)
    assert getattr(info.value, "bytes_copied") == 0  # noqa: B009


def _slow_drain(sock: socket.socket, out: bytearray) -> threading.Thread:
    def run() -> None:
        while chunk := sock.recv(16384):
            out.extend(chunk)
            time.sleep(0.0005)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_nonblocking_socket_slow_reader_does_not_spin(big_file: Path) -> None:
    size = 1 << 20
    a, b = _slow_pair()
    a.setblocking(False)
    received = bytearray()
    with a, b, open(big_file, "rb") as f:
        zcopy.reset_stats()
        reader = _slow_drain(b, received)
        assert zcopy.copy(a, f, size) == size
        a.shutdown(socket.SHUT_WR)
        reader.join(30)
    assert len(received) == size
    syscalls = zcopy.stats().routes["sendfile"].syscalls
    # Small buffers: the copy had to wait (more than one call), but a busy loop would
    # make tens of thousands of calls while the reader sleeps.
    assert 2 < syscalls < 2000, syscalls


# -- wrappers that have an fd but transform the bytes -----------------------------------------


def test_gzipfile_source_is_decompressed(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as g:
        g.write(DATA)
    a, b = tcp_pair()
    with a, b, gzip.open(path, "rb") as g:
        plan = zcopy.explain(a, g)
        assert plan.route is zcopy.Route.USERSPACE
        assert "GzipFile has fileno()" in str(plan)
        drain = Drain(b)
        assert zcopy.copy(a, g) == len(DATA)
        a.shutdown(socket.SHUT_WR)
        assert drain.result(30) == DATA


def test_peer_error_on_the_first_call_is_not_a_fallback(big_file: Path) -> None:
    """A closed reader is the peer's error, not the route's refusal: it propagates at once."""
    zcopy.reset_stats()
    r, w = os.pipe()
    os.close(r)
    try:
        with open(big_file, "rb") as f:
            with pytest.raises(BrokenPipeError) as info:
                zcopy.copy(w, f)
            assert f.tell() == 0
        assert getattr(info.value, "bytes_copied") == 0  # noqa: B009
        assert info.value.errno == errno.EPIPE
    finally:
        os.close(w)
    assert zcopy.stats().fallbacks == {}


def test_error_after_bytes_moved_is_not_a_fallback(big_file: Path) -> None:
    """Once bytes moved, an error propagates with the count; no switch to another route."""
    zcopy.reset_stats()
    r, w = os.pipe()
    taken = bytearray()

    def read_some_then_close() -> None:
        while len(taken) < 256 << 10:
            taken.extend(os.read(r, 65536))
        os.close(r)

    reader = threading.Thread(target=read_some_then_close, daemon=True)
    reader.start()
    try:
        with open(big_file, "rb") as f:
            with pytest.raises(BrokenPipeError) as info:
                zcopy.copy(w, f)
            position = f.tell()
        copied: int = getattr(info.value, "bytes_copied")  # noqa: B009
        assert 256 << 10 <= copied < BIG
        assert position == copied, "the source position says what was sent"
        assert big_file.read_bytes()[: len(taken)] == bytes(taken)
    finally:
        reader.join(30)
        os.close(w)
    assert zcopy.stats().fallbacks == {}
    assert set(zcopy.stats().routes) == {"sendfile"}


def test_odd_buffers() -> None:
    import array
    import mmap

    m = mmap.mmap(-1, 10)
    m.close()
    with pytest.raises(ValueError, match="closed"):
        zcopy.copy(io.BytesIO(), m)
    with pytest.raises(ValueError, match="contiguous"):
        zcopy.copy(io.BytesIO(), memoryview(b"abcdef")[::2])
    out = io.BytesIO()
    arr = array.array("i", [1, 2])
    assert zcopy.copy(out, arr) == 2 * arr.itemsize  # bytes, not items
    assert out.getvalue() == arr.tobytes()
