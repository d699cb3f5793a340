"""Attacks on the direct path (zcopy/_direct.py ``Shot.attempt``, the lock-free stats log).

Careless callers and racing threads and signals, with real files, sockets and pipes.
Each odd case runs twice: once on the direct path and once with a copy listener
installed, which turns the direct path off (``_stats.listeners``), so the full path
is the oracle; both must also give the value the case calls for.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import zcopy
from zcopy import _stats
from zcopy._stats import CopyEvent

KIB = 1 << 10
Pair = tuple[socket.socket, socket.socket]


def drain(peer: socket.socket) -> bytes:
    """Everything the peer has been sent so far (the copies are done: nothing more comes)."""
    got = bytearray()
    peer.setblocking(False)
    try:
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:
            try:
                chunk = peer.recv(1 << 20)
            except BlockingIOError:
                time.sleep(0.002)
                continue
            got += chunk
            deadline = time.monotonic() + 0.02
    finally:
        peer.settimeout(10)
    return bytes(got)


def pattern(size: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + salt) % 251 for i in range(size))


Outcome = tuple[object, ...]


def on_both_paths(case: Callable[[socket.socket], Outcome], pair: Pair) -> Outcome:
    """Run ``case`` on the direct path, then on the full path; they must agree.

    Returns the outcome (what ``case`` returned, plus the bytes the peer got).
    """
    out, peer = pair
    direct = (*case(out), drain(peer))

    def hear(event: CopyEvent) -> None:
        pass

    _stats.listeners.append(hear)  # a listener wants the plan's reason: no direct path
    try:
        full = (*case(out), drain(peer))
    finally:
        _stats.listeners.remove(hear)
    assert direct == full, f"direct path {direct!r:.300}\n  full path {full!r:.300}"
    return direct


def test_a_buffered_reader_with_read_ahead(tmp_path: Path, pair: Pair) -> None:
    """read(3) fills the buffer with the whole file; the copy starts at 3 all the same, and
    the reader's next read agrees with where the copy left it."""
    path = tmp_path / "f"
    data = pattern(20_000)
    path.write_bytes(data)

    def to_eof(out: socket.socket) -> Outcome:
        with open(path, "rb") as f:
            head = f.read(3)
            n = zcopy.copy(out, f)
            return head, n, f.tell(), f.read()

    def counted(out: socket.socket) -> Outcome:
        with open(path, "rb") as f:
            f.read(3)
            n = zcopy.copy(out, f, 1000)
            return n, f.tell(), f.read(5)

    assert on_both_paths(to_eof, pair) == (data[:3], 19_997, 20_000, b"", data[3:])
    assert on_both_paths(counted, pair) == (1000, 1003, data[1003:1008], data[3:1003])


def test_a_file_grown_or_shrunk_between_two_copies(tmp_path: Path, pair: Pair) -> None:
    path = tmp_path / "f"

    def grown(out: socket.socket) -> Outcome:
        path.write_bytes(pattern(5000))
        with open(path, "rb") as f:
            f.read(10)  # read-ahead holds the old end
            with open(path, "ab") as g:
                g.write(pattern(777, 1))
            n = zcopy.copy(out, f)
            return n, f.tell()

    def shrunk_below_the_position(out: socket.socket) -> Outcome:
        path.write_bytes(pattern(5000))
        with open(path, "rb", buffering=0) as f:
            f.seek(4000)
            os.truncate(path, 100)
            return zcopy.copy(out, f), zcopy.copy(out, f, 10), f.tell()

    assert on_both_paths(grown, pair) == (5767, 5777, pattern(5000)[10:] + pattern(777, 1))
    assert on_both_paths(shrunk_below_the_position, pair) == (0, 0, 4000, b"")


def test_an_r_plus_b_source_that_another_handle_writes(tmp_path: Path, pair: Pair) -> None:
    path = tmp_path / "f"

    def other_writer(out: socket.socket) -> Outcome:
        path.write_bytes(pattern(3000))
        with open(path, "r+b") as f, open(path, "r+b", buffering=0) as g:
            f.read(10)
            g.seek(2990)
            g.write(b"W" * 30)  # overwrites the tail and grows the file by 20
            n = zcopy.copy(out, f)
            return n, f.tell()

    def own_unflushed_write(out: socket.socket) -> Outcome:
        path.write_bytes(pattern(3000))
        with open(path, "r+b") as f:
            f.seek(10)
            f.write(b"DIRTY")  # still in f's buffer: a copy must not send what is on disk
            n = zcopy.copy(out, f)
            return n, f.tell()

    body = pattern(3000)[10:2990] + b"W" * 30
    assert on_both_paths(other_writer, pair) == (3010, 3020, body)
    assert on_both_paths(own_unflushed_write, pair) == (2985, 3000, pattern(3000)[15:])


@pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning")  # /proc/self/cmdline: user space
@pytest.mark.parametrize(
    "path", ["/proc/version", "/proc/self/cmdline", "/sys/devices/system/cpu/online"]
)
def test_proc_and_sys_files(pair: Pair, path: str) -> None:
    """/proc reports size 0, /sys 4096: neither is the content's size."""
    with open(path, "rb") as f:
        content = f.read()

    def read_ahead(out: socket.socket) -> Outcome:
        with open(path, "rb") as f:
            f.read(1)
            n = zcopy.copy(out, f)
            return n, f.tell(), zcopy.copy(out, zcopy.section(f, 1, 3)), f.tell()

    assert on_both_paths(read_ahead, pair) == (
        len(content) - 1,
        len(content),
        3,
        len(content),
        content[1:] + content[1:4],
    )


def test_sections_and_counts_past_the_end(tmp_path: Path, pair: Pair) -> None:
    path = tmp_path / "f"
    data = pattern(5000)
    path.write_bytes(data)

    def past(out: socket.socket) -> Outcome:
        with open(path, "rb", buffering=0) as f:
            fd = os.open(path, os.O_RDONLY)
            try:
                f.seek(7)
                got = (
                    zcopy.copy(out, zcopy.section(f, 9000, 10)),
                    zcopy.copy(out, zcopy.section(f, 5000, 10)),
                    zcopy.copy(out, zcopy.section(f, 4990, 100)),
                    zcopy.copy(out, zcopy.section(fd, 9000, 10)),
                    zcopy.copy(out, zcopy.section(fd, 4999, None)),
                    f.tell(),
                )
                f.seek(9000)
                return (*got, zcopy.copy(out, f), zcopy.copy(out, f, 10), f.tell())
            finally:
                os.close(fd)

    assert on_both_paths(past, pair) == (0, 0, 10, 0, 1, 7, 0, 0, 9000, data[4990:] + data[4999:])


def test_acopy_of_a_read_ahead_reader_and_of_sections_past_the_end(
    tmp_path: Path, pair: Pair
) -> None:
    """The same odd sources through acopy (a non-blocking socket: its direct attempt)."""
    path = tmp_path / "f"
    data = pattern(9000)
    path.write_bytes(data)

    async def copies(out: socket.socket) -> Outcome:
        with open(path, "rb") as f:
            f.read(5)
            n = await zcopy.acopy(out, f)
            at_end = f.tell()
            f.seek(8990)
            counted = await zcopy.acopy(out, f, 100)
            return (
                n,
                at_end,
                counted,
                f.tell(),
                await zcopy.acopy(out, zcopy.section(f, 20_000, 10)),
                await zcopy.acopy(out, zcopy.section(f, 8999, 10)),
            )

    def case(out: socket.socket) -> Outcome:
        out.setblocking(False)
        try:
            return asyncio.run(copies(out))
        finally:
            out.settimeout(10)

    assert on_both_paths(case, pair) == (
        8995,
        9000,
        10,
        9000,
        0,
        1,
        data[5:] + data[8990:] + data[8999:],
    )


def test_a_file_resized_by_another_thread_while_copied_to_eof(tmp_path: Path, pair: Pair) -> None:
    """A thread grows and truncates the file while copies to EOF run: each copy's count is
    what the peer got, and the position moved by exactly that."""
    out, peer = pair
    path = tmp_path / "f"
    path.write_bytes(b"z" * 50_000)
    stop = threading.Event()
    got = [0]

    def resize() -> None:
        rnd = random.Random(1)
        with open(path, "r+b", buffering=0) as g:
            while not stop.is_set():
                size = rnd.randrange(0, 200_000)
                g.truncate(size)  # growing leaves a hole: zeros, which are the file's too
                g.seek(0, os.SEEK_END)
                g.write(b"z" * rnd.randrange(0, 4000))

    def count() -> None:
        while chunk := peer.recv(1 << 20):
            assert set(chunk) <= {0, ord("z")}, "a byte that is not the file's"
            got[0] += len(chunk)

    threads = [threading.Thread(target=resize), threading.Thread(target=count)]
    for t in threads:
        t.start()
    sent = copies = 0
    try:
        with open(path, "rb") as f:
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                start = f.tell() if random.random() < 0.5 else f.seek(random.randrange(0, 9000))
                n = zcopy.copy(out, f)
                assert f.tell() == start + n
                sent += n
                copies += 1
    finally:
        stop.set()
        out.shutdown(socket.SHUT_WR)
        for t in threads:
            t.join(20)
    assert got[0] == sent and copies > 100


# --- a file object whose fd changed under it -----------------------------------------------


def _copied_once_then_closed(tmp_path: Path, out: socket.socket, peer: socket.socket) -> io.FileIO:
    """A FileIO the direct path has classified (and remembered), then its fd closed behind its
    back: what a careless caller that closes ``f.fileno()`` leaves. (closefd=False: closing
    the object later must not close whatever has the number by then.)"""
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    f = io.FileIO(os.open(path, os.O_RDONLY), "rb", closefd=False)
    assert zcopy.copy(out, f, 4) == 4
    assert peer.recv(10) == b"0123"
    os.close(f.fileno())
    return f


def take_number(new: int, number: int) -> None:
    """Make ``number`` name what ``new`` names (the lowest free number may be it already)."""
    if new != number:
        os.dup2(new, number)
        os.close(new)


def test_a_fresh_file_object_over_a_closed_fd_is_refused(tmp_path: Path, pair: Pair) -> None:
    out, _ = pair
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with io.FileIO(os.open(path, os.O_RDONLY), "rb", closefd=False) as f:
        os.close(f.fileno())
        with pytest.raises(ValueError, match="closed or invalid") as info:
            zcopy.copy(out, f)
        assert info.value.bytes_copied == 0  # type: ignore[attr-defined]


def test_a_remembered_file_object_over_a_closed_fd_is_refused_the_same(
    tmp_path: Path, pair: Pair
) -> None:
    out, peer = pair
    with _copied_once_then_closed(tmp_path, out, peer) as f:
        with pytest.raises(ValueError, match="closed or invalid") as info:
            zcopy.copy(out, f)
        assert info.value.bytes_copied == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["pipe", "socket"])
def test_an_fd_number_taken_by_a_pipe_or_socket_is_classified_again(
    tmp_path: Path, pair: Pair, kind: str
) -> None:
    out, peer = pair
    f = _copied_once_then_closed(tmp_path, out, peer)
    fd = f.fileno()
    if kind == "pipe":
        r, w = os.pipe()
        take_number(r, fd)  # the number the FileIO still holds now names a pipe
        os.write(w, b"from the pipe")
        os.close(w)
        other = None
    else:
        a, other = socket.socketpair()
        take_number(a.detach(), fd)
        other.sendall(b"from the pipe")
        other.shutdown(socket.SHUT_WR)
    try:
        assert zcopy.copy(out, f) == 13
        assert drain(peer) == b"from the pipe"
    finally:
        f.close()  # closefd=False: the fd number is closed below, once
        os.close(fd)
        if other is not None:
            other.close()


def test_an_fd_number_taken_by_another_regular_file(tmp_path: Path, pair: Pair) -> None:
    """A regular file behind the old number: the kernel reads that file, on either path
    (the number is all the kernel knows); the count and the position agree with it."""
    peer = pair[1]

    def case(sock: socket.socket) -> Outcome:
        other = tmp_path / "other"
        other.write_bytes(b"another file's bytes")
        f = _copied_once_then_closed(tmp_path, sock, peer)
        fd = f.fileno()
        take_number(os.open(other, os.O_RDONLY), fd)
        try:
            return zcopy.copy(sock, f), f.tell()
        finally:
            f.close()
            os.close(fd)

    assert on_both_paths(case, pair) == (20, 20, b"another file's bytes")


# --- stats: threads, resets, signals -------------------------------------------------------


def test_stats_stay_whole_while_threads_copy_read_and_reset(tmp_path: Path) -> None:
    """Direct sendfiles and writes on four threads, stats() and reset_stats() on two more:
    every snapshot is whole copies (bytes = calls x size, one syscall each); then, without
    resets, the totals are exact."""
    path = tmp_path / "f"
    path.write_bytes(pattern(1000))
    stop = threading.Event()
    problems: list[str] = []

    def copier(rounds: int) -> None:
        a, b = socket.socketpair()
        with a, b, open(path, "rb") as f:
            for _ in range(rounds):
                f.seek(0)
                assert zcopy.copy(a, f) == 1000
                assert zcopy.copy(io.BytesIO(), b"x" * 100) == 100
                b.recv(4096)

    def snapshots(reset: bool) -> None:
        while not stop.is_set():
            if reset:
                zcopy.reset_stats()
            routes = zcopy.stats().routes
            for name, size in (("sendfile", 1000), ("write", 100)):
                r = routes.get(name)
                if r is not None and not (r.bytes == r.calls * size == r.syscalls * size):
                    problems.append(f"{name}: {r}")

    def run(threads: int, rounds: int, resets: bool) -> None:
        stop.clear()
        watchers = [threading.Thread(target=snapshots, args=(r,)) for r in (False, resets)]
        for t in watchers:
            t.start()
        workers = [threading.Thread(target=copier, args=(rounds,)) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(30)
        stop.set()
        for t in watchers:
            t.join(30)

    zcopy.reset_stats()  # nothing from earlier tests in the first snapshots
    run(4, 1500, resets=True)
    assert not problems, problems[:5]
    zcopy.reset_stats()
    run(4, 700, resets=False)
    assert not problems, problems[:5]
    routes = zcopy.stats().routes
    assert (routes["sendfile"].calls, routes["sendfile"].bytes) == (2800, 2_800_000)
    assert (routes["write"].calls, routes["write"].bytes) == (2800, 280_000)


class Alarm(Exception):
    """Raised by the signal handler, as a KeyboardInterrupt or a timeout alarm would be."""


class Armed:
    """A signal handler that raises only inside ``run`` (never in the test's own code)."""

    def __init__(self) -> None:
        self.armed = False
        self.raised = 0

    def __call__(self, signum: int, frame: object) -> None:
        if self.armed:
            self.armed = False
            raise Alarm

    def run(self, copy: Callable[..., int], *args: object) -> None:
        try:
            self.armed = True
            copy(*args)
        except Alarm:
            self.raised += 1
        finally:
            self.armed = False


def test_a_signal_handler_raising_anywhere_leaves_stats_exact(tmp_path: Path, pair: Pair) -> None:
    """An interval timer's handler raises into thousands of direct copies (writes and
    sendfiles): stats() counts exactly the bytes that arrived, none twice. (A raise right
    after the copy was logged, before it returned, counted it again: 170 copies in 3 s.)"""
    out, peer = pair
    path = tmp_path / "f"
    path.write_bytes(b"s" * 700)
    received = [0]

    def count() -> None:
        while chunk := peer.recv(1 << 20):
            received[0] += len(chunk)

    reader = threading.Thread(target=count)
    reader.start()
    handler = Armed()
    # A CPU-time timer (SIGVTALRM): pytest-timeout owns SIGALRM and ITIMER_REAL.
    old = signal.signal(signal.SIGVTALRM, handler)
    zcopy.reset_stats()
    written = 0
    try:
        with open(path, "rb", buffering=0) as f:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0.0002, 0.00007)
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                sink = io.BytesIO()
                handler.run(zcopy.copy, sink, b"w" * 100)
                written += len(sink.getvalue())
                f.seek(0)
                handler.run(zcopy.copy, out, f, 700)
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)
        out.shutdown(socket.SHUT_WR)
        reader.join(20)
    routes = zcopy.stats().routes
    assert handler.raised > 100, "the handler hardly ever ran inside a copy"
    assert routes["write"].bytes == written
    assert sum(r.bytes for name, r in routes.items() if name != "write") == received[0]
