"""A signal handler that raises mid-copy: the count and the position are what the kernel moved.

CPython runs a Python signal handler between bytecodes, so right after a syscall
returns (a signal that arrives while a blocking sendfile() sleeps makes it return
early with what it sent, and the handler runs next). A handler that raises there
used to lose the syscall's result: ``bytes_copied`` said 0 while the peer had
megabytes, and ``tell()`` stayed put. Every route is attacked here by a storm of
signals aimed at the copying thread; one of them raises, at a random moment,
and what the peer received is compared with ``exc.bytes_copied`` and the
source's position.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from conftest import tcp_pair
from pool_util import assert_pool_clean, assert_pool_sound

import zcopy

# Every test here must leave no fd behind; fallbacks are expected, not warned about.
pytestmark = [
    pytest.mark.usefixtures("no_fd_leak"),
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
]

SIZE = 8 << 20
DATA = os.urandom(SIZE)
ATTEMPTS = 30  # the race was hit within ~10 attempts on a 2-CPU machine before the fix
START = 4096  # file sources start here, so a position reset to 0 cannot pass


class Interrupted(Exception):
    """What the raising handler raises (a KeyboardInterrupt or an alarm used as a timeout)."""


class Storm:
    """SIGUSR1 at the main thread every 0.3 ms; the handler raises once, after ``fuse`` seconds,
    at the first signal that finds zcopy's code running.

    Aimed with pthread_kill so the copying thread is the one whose syscall is
    cut short (a process-wide itimer could land on the reader thread).
    """

    def __init__(self, fuse: float) -> None:
        self.fuse = fuse
        self.armed_at = 0.0
        self.fired = 0
        self.raised = False
        self._stopping = False  # a plain flag: the storm's end must take no lock under fire
        self._main = threading.get_ident()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.fired += 1
        # Raise only into zcopy's own code: a raise between copy() returning and
        # the test storing its result would test the test, not zcopy.
        inside = frame is not None and frame.f_globals.get("__name__", "").startswith("zcopy")
        if inside and not self.raised and time.monotonic() >= self.armed_at + self.fuse:
            self.raised = True
            raise Interrupted(f"signal {signum} after {self.fuse * 1000:.1f} ms")

    def _tick(self) -> None:
        while not self._stopping:
            signal.pthread_kill(self._main, signal.SIGUSR1)
            time.sleep(0.0003)

    @contextlib.contextmanager
    def running(self) -> Iterator[Storm]:
        old = signal.signal(signal.SIGUSR1, self._handler)
        ticker = threading.Thread(target=self._tick, daemon=True)
        self.armed_at = time.monotonic()
        ticker.start()
        try:
            yield self
        finally:
            # Stop the storm with SIGUSR1 blocked in this thread: taking a lock (an Event's)
            # while a signal lands every 0.3 ms livelocked the main thread once in CI.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
            try:
                self._stopping = True
                ticker.join(10)
                assert not ticker.is_alive(), "the signal storm did not stop"
            finally:
                # A signal still pending runs this handler (it raises only inside zcopy).
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
                signal.signal(signal.SIGUSR1, old)


class SlowPeer:
    """Read a socket to EOF in a thread, 64 KiB per 0.5 ms until told to hurry.

    A paced reader keeps every copy running for well over the storm's fuse, so
    the raise lands mid-copy whatever the machine's load.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.hurry = threading.Event()
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while data := self.sock.recv(64 * 1024 if not self.hurry.is_set() else 1 << 20):
            self.chunks.append(data)
            if not self.hurry.is_set():
                time.sleep(0.0005)

    def result(self) -> bytes:
        self.hurry.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the peer did not see EOF in time"
        return b"".join(self.chunks)


def slow_pair() -> tuple[socket.socket, socket.socket]:
    """A TCP pair with small buffers: a big copy blocks in the kernel most of the time."""
    a, b = tcp_pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return a, b


def interrupted_copy(run: Callable[[], int]) -> tuple[int, int]:
    """Run one copy in a storm; return (bytes_copied, 1 if the handler's raise cut it short)."""
    storm = Storm(random.uniform(0.0005, 0.03))
    try:
        with storm.running():
            n = run()
    except Interrupted as exc:
        return exc.bytes_copied, 1  # type: ignore[attr-defined]
    return n, 0


def attack(once: Callable[[], int]) -> None:
    """Loop the attack; require that the raise landed mid-copy often enough to mean something."""
    cut = sum(once() for _ in range(ATTEMPTS))
    assert cut >= ATTEMPTS // 3, f"only {cut} of {ATTEMPTS} copies were cut short: no proof"


# A source for one attempt: yields (the object to copy from, where in DATA it starts),
# and cleans up after itself (closes files, stops feeder threads).
Source = Callable[[], contextlib.AbstractContextManager[tuple[object, int]]]


def to_socket(source: Source, timeout: float | None = None, blocking: bool = True) -> None:
    """Attack: copy each source into a slow TCP peer; bytes_copied is what the peer got."""

    def once() -> int:
        a, b = slow_pair()
        with a, b, source() as (src, start):
            if not blocking:
                a.setblocking(False)
            elif timeout is not None:
                a.settimeout(timeout)
            drain = SlowPeer(b)
            try:
                n, cut = interrupted_copy(functools.partial(zcopy.copy, a, src))
            finally:
                a.shutdown(socket.SHUT_WR)
                got = drain.result()
            assert n == len(got), f"bytes_copied {n}, the peer received {len(got)}"
            assert got == DATA[start : start + n]
            if isinstance(src, io.IOBase):
                assert src.tell() == START + n, f"tell() {src.tell()}, start + copied {START + n}"
            return cut

    attack(once)


@pytest.fixture(scope="module")
def src_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signals") / "src.bin"
    path.write_bytes(DATA)
    return path


@pytest.mark.parametrize(
    ("timeout", "blocking"), [(None, True), (5.0, True), (None, False)],
    ids=["blocking", "timeout", "nonblocking"],
)
def test_sendfile_file_to_tcp(src_path: Path, timeout: float | None, blocking: bool) -> None:
    @contextlib.contextmanager
    def file_at_start() -> Iterator[tuple[object, int]]:
        with open(src_path, "rb") as f:
            f.seek(START)
            yield f, START

    to_socket(file_at_start, timeout, blocking)


def test_write_route_buffer_to_tcp() -> None:
    @contextlib.contextmanager
    def buffer_at_start() -> Iterator[tuple[object, int]]:
        b = io.BytesIO(DATA)
        b.seek(START)
        yield b, START

    to_socket(buffer_at_start)


class JustReader:
    """The user-space route's source: nothing but read()."""

    def __init__(self, data: bytes) -> None:
        self.f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self.f.read(n)


def test_userspace_route_to_tcp() -> None:
    # No position to check: what JustReader gave up but the peer did not get is
    # lost to the caller, and bytes_copied says exactly where the peer stands.
    @contextlib.contextmanager
    def reader() -> Iterator[tuple[object, int]]:
        yield JustReader(DATA[START:]), START

    to_socket(reader)


def test_splice_socket_to_socket_through_the_pool() -> None:
    @contextlib.contextmanager
    def fed_socket() -> Iterator[tuple[object, int]]:
        src, feed = tcp_pair()
        with src, feed:
            feeder = threading.Thread(target=_feed_socket, args=(feed, DATA), daemon=True)
            feeder.start()
            yield src, 0
            src.close()  # the feeder may still be sending: let it see the reset
            feeder.join(30)

    to_socket(fed_socket)


def test_splice_pipe_to_socket_direct() -> None:
    @contextlib.contextmanager
    def fed_pipe() -> Iterator[tuple[object, int]]:
        r, w = os.pipe()
        feeder = threading.Thread(target=_feed_pipe, args=(w,), daemon=True)
        feeder.start()
        try:
            yield r, 0
        finally:
            os.close(r)  # the feeder sees EPIPE and stops
            feeder.join(30)

    to_socket(fed_pipe)


def _feed_socket(sock: socket.socket, data: bytes, burst: int | None = None) -> None:
    """Send data then EOF; in bursts 1 ms apart if asked. A reset ends the feed quietly."""
    step = burst or len(data)
    with contextlib.suppress(OSError):
        for i in range(0, len(data), step):
            sock.sendall(data[i : i + step])
            if burst:
                time.sleep(0.001)
        sock.shutdown(socket.SHUT_WR)


def _feed_pipe(w: int) -> None:
    with contextlib.suppress(BrokenPipeError), open(w, "wb") as out:
        out.write(DATA)


def test_copy_file_range_file_to_file(src_path: Path, tmp_path: Path) -> None:
    # copy_file_range into a file never blocks: the signal lands while the kernel
    # copies (it stops early with what it did when a signal is pending).
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(8):
            f.write(DATA)

    def once() -> int:
        out = tmp_path / "out.bin"
        with open(big, "rb") as src, open(out, "wb") as dst:
            src.seek(START)
            n, cut = interrupted_copy(functools.partial(zcopy.copy, dst, src))
            assert src.tell() == START + n
            assert dst.tell() == n
        assert out.stat().st_size == n
        return cut

    cut = sum(once() for _ in range(ATTEMPTS))
    # A 64 MiB in-kernel copy is fast: the raise lands after it as often as during.
    assert cut >= 1, "no copy was cut short: no proof"


def test_pool_never_hands_out_bytes_after_interrupted_copies() -> None:
    """Issue #9's reproduction: an interrupted socket->socket copy, then an unrelated one.

    The source sends in bursts (the copy outlasts the fuse) and dst drains at
    once, so the raise often lands while bytes sit in the splice pipe; the pool
    is then inspected with FIONREAD, and the next copy, of b"clean", must
    deliver exactly b"clean", never b"SSSSS".
    """
    stale = b"S" * SIZE
    cut = 0
    for _ in range(ATTEMPTS):
        src, feed = tcp_pair()
        a, b = tcp_pair()
        with src, feed, a, b:
            feeder = threading.Thread(
                target=_feed_socket, args=(feed, stale, 256 * 1024), daemon=True
            )
            feeder.start()
            drain = SlowPeer(b)
            drain.hurry.set()  # dst takes everything at once: the pipe is where bytes wait
            try:
                n, hit = interrupted_copy(functools.partial(zcopy.copy, a, src))
            finally:
                a.shutdown(socket.SHUT_WR)
                got = drain.result()
                src.close()
                feeder.join(30)
            cut += hit
        assert_pool_clean()
        assert n == len(got), f"bytes_copied {n}, the peer received {len(got)}"
    assert cut >= ATTEMPTS // 3, f"only {cut} of {ATTEMPTS} copies were cut short: no proof"


# --- A raise at every point: the storm above lands at random; this walks each one ----------
#
# CPython runs a signal handler where its eval loop checks for pending signals: on entering a
# function, right after a call returns (a C call such as os.sendfile, or a Python one), and on
# a loop's backward jump. A profile function sees the first two as events ("call", "return",
# "c_return"), and one that raises there makes the exception appear where the handler's
# would: in the callee before its first line, or at the call site once the call (and the
# syscall's work) is done. One raise per copy, at the k-th such point zcopy passes, for every
# k the copy has: the bookkeeping after the kernel's last call (settling the count, setting
# the positions, recording stats) is covered as well as the calls themselves.

_POINTS = ("call", "return", "c_return")


def _in_zcopy(frame: FrameType | None) -> bool:
    return frame is not None and frame.f_globals.get("__name__", "").startswith("zcopy")


def _is_point(frame: FrameType, event: str) -> bool:
    if event not in _POINTS or not _in_zcopy(frame):
        return False
    if "__del__" in (frame.f_code.co_name, frame.f_back and frame.f_back.f_code.co_name):
        # A finalizer runs whenever the collector does, not in the copy's flow, and CPython
        # only prints what raises there: no code can guard it (a Pipe's fds then close with
        # the process).
        return False
    # Entering or leaving the entry point itself (copy() called from, or returning to, the
    # caller): a raise there comes before the call or after it, the caller's to handle.
    return event == "c_return" or _in_zcopy(frame.f_back)


def _raise_at_point(k: int, raised: list[str]) -> Callable[[FrameType, str, object], None]:
    seen = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal seen
        if _is_point(frame, event):
            seen += 1
            if seen == k:
                code = frame.f_code
                name = getattr(arg, "__name__", "?") if event == "c_return" else code.co_name
                where = f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"
                raised.append(f"{event} {name} at {where}")
                sys.setprofile(None)  # once: the handler raises a single time
                raise Interrupted(raised[-1])

    return profile


def _points_of(attempt: Callable[[Callable[[], int]], int], run: Callable[[], int]) -> int:
    """How many such points one undisturbed run passes (checked like the others)."""
    count = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal count
        count += _is_point(frame, event)

    sys.setprofile(profile)
    try:
        attempt(run)
    finally:
        sys.setprofile(None)
    return count


def _sweep(
    attempt: Callable[[Callable[[], int]], int], factory: Callable[[], Callable[[], int]]
) -> int:
    """Raise at each point in turn; ``attempt`` checks the outcome. Returns the points swept."""
    points = _points_of(attempt, factory())
    assert points > 3, "the copy ran no zcopy code: nothing was swept"
    for k in range(1, points + 1):
        run = factory()
        raised: list[str] = []
        before = _bytes_in_stats()
        sys.setprofile(_raise_at_point(k, raised))
        try:
            n = attempt(run)
            sys.setprofile(None)
            # A copy cut short still counts what it moved, under some route, exactly once.
            assert _bytes_in_stats() - before == n, "zcopy.stats() lost or doubled bytes"
        except AssertionError as exc:
            raise AssertionError(f"raised at {raised or 'no point'}: {exc}") from exc
        finally:
            sys.setprofile(None)
    return points


def _bytes_in_stats() -> int:
    return sum(route.bytes for route in zcopy.stats().routes.values())


def _outcome(run: Callable[[], int], errors: tuple[type[BaseException], ...] = ()) -> int:
    """The bytes copied, from the return value or from the exception (which must say)."""
    caught: tuple[type[BaseException], ...] = (Interrupted, *errors)
    try:
        return run()
    except caught as exc:
        assert hasattr(exc, "bytes_copied"), f"raised without a count: {exc!r}"
        return int(exc.bytes_copied)


@pytest.mark.parametrize("size", [4096, 3 << 20])
def test_a_raise_at_any_point_file_to_file(tmp_path: Path, size: int) -> None:
    # The Job path (copy_file_range), with buffered objects whose positions must follow.
    src_file = tmp_path / "src.bin"
    src_file.write_bytes(DATA[: START + size])
    out_file = tmp_path / "out.bin"
    opened: list[tuple[io.BufferedReader, io.BufferedWriter]] = []

    def factory() -> Callable[[], int]:
        src = open(src_file, "rb")  # noqa: SIM115 - closed by attempt()
        dst = open(out_file, "wb")  # noqa: SIM115
        src.seek(START)
        opened.append((src, dst))
        return functools.partial(zcopy.copy, dst, src)

    def attempt(run: Callable[[], int]) -> int:
        src, dst = opened[-1]
        with src, dst:
            n = _outcome(run)
            assert src.tell() == START + n
            assert dst.tell() == n
        assert out_file.read_bytes() == DATA[START : START + n]
        return n

    _sweep(attempt, factory)


@pytest.mark.parametrize(
    ("driver", "size", "timeout"),
    [
        ("copy", 4096, None),
        ("copy", 3 << 20, None),
        ("copy", 1 << 20, 5.0),
        ("acopy", 4096, 0.0),
        ("acopy", 1 << 20, 0.0),
    ],
)
def test_a_raise_at_any_point_file_to_socket(
    tmp_path: Path, driver: str, size: int, timeout: float | None
) -> None:
    # copy(): one sendfile finishes the small file and the big one (a blocking socket waits
    # in the kernel); a socket with a timeout makes the full path wait in poll() between
    # calls. acopy(): its driver runs in the loop's callbacks, and a raise there must still
    # resolve the copy (never leave it awaiting forever).
    src_file = tmp_path / "src.bin"
    src_file.write_bytes(DATA[: START + size])
    state: list[tuple[io.BufferedReader, socket.socket, SlowPeer]] = []

    def factory() -> Callable[[], int]:
        a, b = slow_pair()
        a.settimeout(timeout)
        src = open(src_file, "rb")  # noqa: SIM115 - closed by attempt()
        src.seek(START)
        state.append((src, a, SlowPeer(b)))
        if driver == "copy":
            return functools.partial(zcopy.copy, a, src)

        async def main() -> int:
            return await asyncio.wait_for(zcopy.acopy(a, src), 10)

        return functools.partial(asyncio.run, main())

    def attempt(run: Callable[[], int]) -> int:
        src, a, peer = state[-1]
        with src:
            try:
                n = _outcome(run)
                assert src.tell() == START + n
            finally:
                a.close()
                got = peer.result()
                peer.sock.close()
        assert got == DATA[START : START + n]
        return n

    _sweep(attempt, factory)


def test_a_raise_at_any_point_user_space_to_socket() -> None:
    # An fd-less source: the user-space route, its buffer and the pool's accounting.
    state: list[tuple[socket.socket, SlowPeer]] = []

    def factory() -> Callable[[], int]:
        a, b = slow_pair()
        a.settimeout(5.0)
        state.append((a, SlowPeer(b)))
        return functools.partial(zcopy.copy, a, JustReader(DATA[: 1 << 20]))

    def attempt(run: Callable[[], int]) -> int:
        a, peer = state[-1]
        try:
            n = _outcome(run)
        finally:
            a.close()
            got = peer.result()
            peer.sock.close()
        assert got == DATA[:n]
        return n

    _sweep(attempt, factory)


def test_a_raise_at_any_point_bytes_to_bytesio() -> None:
    sinks: list[io.BytesIO] = []

    def factory() -> Callable[[], int]:
        sinks.append(io.BytesIO())
        return functools.partial(zcopy.copy, sinks[-1], DATA[:5000])

    def attempt(run: Callable[[], int]) -> int:
        n = _outcome(run)
        assert sinks[-1].getvalue() == DATA[:n]
        return n

    _sweep(attempt, factory)


# --- ... also while a real error is being handled --------------------------------------------
#
# The unwinding of a failed copy runs code too: a raise there must not lose the count, a
# position, the stats, or leave an fd registered with the loop or a task waiting forever.


def test_a_raise_at_any_point_while_a_copy_times_out(tmp_path: Path) -> None:
    # The peer never reads: the buffers fill, then the socket's timeout raises TimeoutError.
    src_file = tmp_path / "src.bin"
    src_file.write_bytes(DATA[: START + (4 << 20)])
    state: list[tuple[io.BufferedReader, socket.socket, socket.socket]] = []

    def factory() -> Callable[[], int]:
        a, b = slow_pair()
        a.settimeout(0.02)
        src = open(src_file, "rb")  # noqa: SIM115 - closed by attempt()
        src.seek(START)
        state.append((src, a, b))
        return functools.partial(zcopy.copy, a, src)

    def attempt(run: Callable[[], int]) -> int:
        src, a, b = state[-1]
        with src:
            try:
                n = _outcome(run, (TimeoutError,))
                assert src.tell() == START + n
            finally:
                a.close()
                peer = SlowPeer(b)
                got = peer.result()
                b.close()
        assert got == DATA[START : START + n]
        return n

    _sweep(attempt, factory)


@pytest.mark.parametrize("ending", ["cancelled", "peer gone"])
def test_a_raise_at_any_point_while_an_acopy_ends_early(tmp_path: Path, ending: str) -> None:
    # Cancelled while it waits (acopy's own unwinding), or the peer closes mid-copy (the error
    # comes out in the loop's callback): either way the task gets its answer, counted.
    src_file = tmp_path / "src.bin"
    src_file.write_bytes(DATA[: START + (4 << 20)])
    state: list[tuple[io.BufferedReader, socket.socket, socket.socket, list[bool]]] = []

    def factory() -> Callable[[], int]:
        a, b = socket.socketpair()
        a.setblocking(False)
        src = open(src_file, "rb")  # noqa: SIM115 - closed by attempt()
        src.seek(START)
        registered: list[bool] = []

        async def main() -> int:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(zcopy.acopy(a, src))
            loop.call_later(0.02, task.cancel if ending == "cancelled" else b.close)
            try:
                done, _ = await asyncio.wait({task}, timeout=5)
                assert done, "the acopy() task was left waiting"
                return task.result()
            finally:
                registered.append(a.fileno() in loop._selector.get_map())  # type: ignore[attr-defined]

        state.append((src, a, b, registered))
        return functools.partial(asyncio.run, main())

    def attempt(run: Callable[[], int]) -> int:
        src, a, b, registered = state[-1]
        with src, a, b:
            n = _outcome(run, (asyncio.CancelledError, OSError))
            assert registered == [False], "an fd stayed registered with the loop"
            assert src.tell() == START + n
        return n

    _sweep(attempt, factory)


def test_a_raise_at_any_point_of_a_relay() -> None:
    # Both ways flowing; a raise anywhere (even while the second way is being set up, with
    # bytes already going the first way) leaves bytes_relayed equal to what each peer got,
    # and no fd registered with the loop.
    up_data, down_data = DATA[:300_000], DATA[1_000_000:1_150_000]
    state: list[dict[str, Any]] = []

    def peer(s: socket.socket, data: bytes, got: list[bytes]) -> threading.Thread:
        def send() -> None:
            with contextlib.suppress(OSError):
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)

        def receive() -> None:
            threading.Thread(target=send, daemon=True).start()
            with contextlib.suppress(OSError):
                while chunk := s.recv(1 << 20):
                    got.append(chunk)

        t = threading.Thread(target=receive, daemon=True)
        t.start()
        return t

    def factory() -> Callable[[], int]:
        a, x = socket.socketpair()
        b, y = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        got_x: list[bytes] = []
        got_y: list[bytes] = []
        c: dict[str, Any] = {"socks": (a, b, x, y), "got": (got_x, got_y), "registered": []}
        c["peers"] = (peer(x, up_data, got_x), peer(y, down_data, got_y))

        async def main() -> int:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(zcopy.relay(a, b))
            try:
                done, _ = await asyncio.wait({task}, timeout=5)
                assert done, "relay() was left waiting"
                up, down = task.result()
                return up + down
            finally:
                fds = (a.fileno(), b.fileno())
                c["registered"] = [fd for fd in fds if fd in loop._selector.get_map()]  # type: ignore[attr-defined]

        state.append(c)
        return functools.partial(asyncio.run, main())

    def attempt(run: Callable[[], int]) -> int:
        c = state[-1]
        a, b, x, y = c["socks"]
        try:
            try:
                run()
                relayed = None
            except Interrupted as exc:
                relayed = getattr(exc, "bytes_relayed", None)
                assert relayed is not None, f"raised without bytes_relayed: {exc!r}"
            assert not c["registered"], f"fds {c['registered']} still registered with the loop"
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            for t in c["peers"]:
                t.join(10)
            x.close()
            y.close()
        got_x, got_y = (b"".join(g) for g in c["got"])
        up, down = relayed if relayed is not None else (len(up_data), len(down_data))
        assert got_y == up_data[:up]
        assert got_x == down_data[:down]
        assert_pool_sound()  # no pipe pooled twice, none pooled with bytes in it
        return int(up + down)

    _sweep(attempt, factory)
