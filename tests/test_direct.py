"""The direct path (zcopy/_direct.py): one kernel call, and everything the full path promises.

Real files and sockets: stats recorded, observers and listeners told, positions
moved, and the hand-over to the full path when the one call does not finish
the copy (a short sendfile, EAGAIN, a pseudo-file, a refusing peer).
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from conftest import DRAINED_TCP, calls_on, run_traced

import zcopy
from zcopy import _direct, _stats
from zcopy._stats import CopyEvent

KIB = 1 << 10


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(min(1 << 20, n - len(got)))
        if not chunk:
            break
        got += chunk
    return bytes(got)


def _file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / f"{size}.bin"
    path.write_bytes(data)
    return path, data


def test_small_file_records_stats_and_moves_position(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    path, data = _file(tmp_path, 4 * KIB)
    zcopy.reset_stats()
    with open(path, "rb") as f:
        f.read(100)  # a buffered reader part-way: the copy starts at its logical position
        assert zcopy.copy(out, f) == len(data) - 100
        assert f.tell() == len(data)
        assert f.read() == b""
    assert _read_exactly(peer, len(data) - 100) == data[100:]
    route = zcopy.stats().routes["sendfile"]
    # One kernel call (the full path makes two: the second finds EOF).
    assert (route.calls, route.bytes, route.syscalls) == (1, len(data) - 100, 1)


def test_counted_copy_of_a_raw_file(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    path, data = _file(tmp_path, 64 * KIB)
    zcopy.reset_stats()
    with open(path, "rb", buffering=0) as f:
        for _ in range(2):  # the second call trusts the first call's classification
            f.seek(10)
            assert zcopy.copy(out, f, 1000) == 1000
            assert f.tell() == 1010
    assert _read_exactly(peer, 2000) == data[10:1010] * 2
    assert zcopy.stats().routes["sendfile"].calls == 2


def test_observers_and_sections(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    path, data = _file(tmp_path, 8 * KIB)
    seen: list[int] = []
    with open(path, "rb", buffering=0) as f:
        f.seek(5)
        n = zcopy.copy(zcopy.observe(out, seen.append), zcopy.section(f, 100, 3000))
        assert f.tell() == 5  # a section leaves the position alone
        fd_n = zcopy.copy(out, zcopy.section(f.fileno(), 0, 10))
        # Counts no single call may ask for: the first call asks for 1 GiB, as the full path's.
        huge = zcopy.copy(out, zcopy.section(f, 8000, 2**70)), zcopy.copy(out, f, 2**70)
        assert f.tell() == len(data)
    assert (n, sum(seen), fd_n, huge) == (3000, 3000, 10, (192, len(data) - 5))
    assert _read_exactly(peer, 3010) == data[100:3100] + data[:10]
    assert _read_exactly(peer, 192 + len(data) - 5) == data[8000:] + data[5:]


def test_listeners_hear_the_plan(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    path, data = _file(tmp_path, 4 * KIB)
    heard: list[CopyEvent] = []
    _stats.listeners.append(heard.append)
    try:
        with open(path, "rb") as f:
            zcopy.copy(out, f)
        zcopy.copy(io.BytesIO(), b"abc")
    finally:
        _stats.listeners.remove(heard.append)
    assert _read_exactly(peer, len(data)) == data
    assert [(e.route, e.nbytes) for e in heard] == [("sendfile", len(data)), ("write", 3)]
    assert "regular file" in heard[0].reason
    assert heard[0].site.startswith(__file__)


def test_bytes_into_bytesio() -> None:
    zcopy.reset_stats()
    out = io.BytesIO()
    out.write(b"xy")
    assert zcopy.copy(out, b"hello", 3) == 3
    assert zcopy.copy(out, b"!") == 1
    assert out.getvalue() == b"xyhel!"
    route = zcopy.stats().routes["write"]
    assert (route.calls, route.bytes, route.syscalls) == (2, 4, 2)
    assert zcopy.copy(io.BytesIO(), b"") == 0  # nothing to write: the full path says so
    assert zcopy.copy(io.BytesIO(), b"abc", 0) == 0
    route = zcopy.stats().routes["write"]
    assert (route.calls, route.bytes, route.syscalls) == (4, 4, 2)  # no call for nothing
    closed = io.BytesIO()
    closed.close()
    with pytest.raises(ValueError, match="closed") as info:
        zcopy.copy(closed, b"abc")
    assert info.value.bytes_copied == 0  # type: ignore[attr-defined]


def test_short_sendfile_hands_over(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    """A timeout socket is O_NONBLOCK: the first call fills the buffer and returns short."""
    out, peer = pair
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * KIB)
    out.settimeout(10)
    path, data = _file(tmp_path, 8 << 20)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(_read_exactly(peer, len(data))))
    zcopy.reset_stats()
    seen: list[int] = []
    with open(path, "rb") as f:
        reader.start()
        assert zcopy.copy(zcopy.observe(out, seen.append), f) == len(data)
        assert f.tell() == len(data)
    reader.join(30)
    assert got == [data]
    assert sum(seen) == len(data) and len(seen) > 1  # the first call was short
    route = zcopy.stats().routes["sendfile"]
    assert (route.calls, route.bytes) == (1, len(data))  # one copy, however many calls
    assert route.syscalls > 1


def test_eagain_first_waits_on_the_full_path(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * KIB)
    out.setblocking(False)
    filler = 0
    while True:  # fill the send buffer (and the peer's receive buffer) to EAGAIN
        try:
            filler += out.send(b"\0" * 65536)
        except BlockingIOError:
            break
    path, data = _file(tmp_path, 4 * KIB)
    got: list[bytes] = []

    def drain_later() -> None:
        time.sleep(0.2)
        got.append(_read_exactly(peer, filler + len(data)))

    reader = threading.Thread(target=drain_later)
    reader.start()
    out.settimeout(10)
    with open(path, "rb") as f:
        assert zcopy.copy(out, f) == len(data)
    reader.join(30)
    assert got and got[0][filler:] == data


def test_acopy_direct_and_blocking_refusal(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    path, data = _file(tmp_path, 4 * KIB)
    seen: list[int] = []

    async def main() -> int:
        with open(path, "rb", buffering=0) as f:
            return await zcopy.acopy(zcopy.observe(out, seen.append), zcopy.section(f, 0, None))

    out.setblocking(False)
    zcopy.reset_stats()
    assert asyncio.run(main()) == len(data)
    assert _read_exactly(peer, len(data)) == data
    assert sum(seen) == len(data) and zcopy.stats().routes["sendfile"].calls == 1
    out.setblocking(True)  # a blocking sink is refused before a byte moves, as ever
    with pytest.raises(ValueError, match="block the event loop"):
        asyncio.run(main())


def test_pseudo_and_empty_files_take_the_full_path(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with open(empty, "rb") as f:
        assert zcopy.copy(out, f) == 0
    with open("/proc/self/stat", "rb") as f, pytest.warns(zcopy.FastPathWarning):
        n = zcopy.copy(out, f)  # size 0, yet content: the kernel refuses, user space copies
    assert n > 0 and _read_exactly(peer, n).split(b" ")[0].isdigit()


def test_refusing_peer_raises_with_the_count(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    path, _ = _file(tmp_path, 4 * KIB)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    peer.close()  # a reset: the first call fails, the full path raises it
    time.sleep(0.05)
    with open(path, "rb") as f, pytest.raises((BrokenPipeError, ConnectionResetError)) as info:
        f.read(100)  # read-ahead held: the size probe's seek to EOF must be undone through f
        try:
            zcopy.copy(out, f)
        finally:
            assert f.tell() == 100
            assert f.read(7) == path.read_bytes()[100:107]
    assert info.value.bytes_copied == 0  # type: ignore[attr-defined]
    unconnected = socket.socket()
    with unconnected, open(path, "rb") as f, pytest.raises(OSError) as info2:
        zcopy.copy(unconnected, f)
    assert info2.value.bytes_copied == 0  # type: ignore[attr-defined]


def test_a_pipe_behind_fileio_is_not_direct() -> None:
    r, w = os.pipe()
    os.write(w, b"through a pipe")
    os.close(w)
    out = io.BytesIO()
    with open(r, "rb", buffering=0) as f, pytest.warns(zcopy.FastPathWarning, match="BytesIO"):
        assert zcopy.copy(out, f) == 14
    assert out.getvalue() == b"through a pipe"


def test_acopy_short_call_hands_over(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * KIB)
    out.setblocking(False)
    path, data = _file(tmp_path, 8 << 20)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(_read_exactly(peer, len(data))))
    seen: list[int] = []

    async def main() -> int:
        with open(path, "rb") as f:
            n = await zcopy.acopy(zcopy.observe(out, seen.append), f)
            assert f.tell() == len(data)
            return n

    zcopy.reset_stats()
    reader.start()
    assert asyncio.run(main()) == len(data)
    reader.join(30)
    assert got == [data] and sum(seen) == len(data) and len(seen) > 1
    route = zcopy.stats().routes["sendfile"]
    assert (route.calls, route.bytes) == (1, len(data))


_SMALL_COPIES = DRAINED_TCP + """
total = 0
for _ in range({copies}):
    with open({path!r}, "rb") as f:
        total += zcopy.copy(a, f)
a.shutdown(socket.SHUT_WR); t.join()
assert total == got[0] == {copies} * {size}, (total, got)
assert zcopy.stats().routes["sendfile"].syscalls == {copies}
"""


def test_one_sendfile_per_small_copy_seen_by_strace(tmp_path: Path) -> None:
    """The direct path's 'one kernel call' claim, from outside: strace counts the calls."""
    path, _ = _file(tmp_path, 4 * KIB)
    copies = 200
    calls = run_traced(
        _SMALL_COPIES.format(path=str(path), copies=copies, size=4 * KIB), tmp_path
    )
    sendfiles = calls_on(calls, "sendfile", path.name) + calls_on(calls, "sendfile64", path.name)
    assert len(sendfiles) == copies  # the full path would make 400 (the second finds EOF)
    assert all(c.ret == 4 * KIB for c in sendfiles)
    for name in ("read", "readv", "pread64", "preadv", "preadv2"):
        assert not calls_on(calls, name, path.name), f"{name} of the file in user space"



class Interrupted(Exception):
    """Raised by the tracer below, as a signal handler would raise between two steps."""


class RaiseAt:
    """A trace function that raises in front of the ``target``-th bytecode of the direct path.

    CPython runs a signal handler only at some bytecode boundaries; a raise in front of
    every one of them, one copy each, covers every place a real handler could raise.
    ``abort()`` is the recovery itself and is left alone.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.seen = 0

    def __call__(self, frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_globals.get("__name__") != "zcopy._direct" or frame.f_code.co_name == "abort":
            return None
        frame.f_trace_opcodes = True
        return self._opcode

    def _opcode(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "opcode":
            self.seen += 1
            if self.seen == self.target:
                raise Interrupted(f"in front of bytecode {self.target} of the direct path")
        return self._opcode


def _run_raising(copy: Callable[[], int], target: int) -> tuple[int, int]:
    """One copy with a raise in front of bytecode ``target`` (0: none).

    Returns (the result, or bytes_copied when it raised; the bytecodes traced).
    """
    tracer = RaiseAt(target)
    old = sys.gettrace()  # coverage's, under CI
    sys.settrace(tracer)
    try:
        n = copy()
    except Interrupted as exc:
        n = exc.bytes_copied  # type: ignore[attr-defined]
    finally:
        sys.settrace(old)
    return n, tracer.seen


def raise_between_every_step(copy: Callable[[], int], check: Callable[[int], None]) -> None:
    """Run ``copy`` once clean, then once per bytecode of the direct path with a raise in
    front of it; ``check(n)`` after each, n being what the copy says it copied, and
    ``stats()`` must have counted exactly n bytes (once, never twice)."""
    zcopy.reset_stats()
    n, steps = _run_raising(copy, 0)
    check(n)
    assert _bytes_in_stats() == n
    assert steps > 20, f"{steps} bytecodes: the direct path did not run"
    for target in range(1, steps + 1):
        zcopy.reset_stats()
        n = _run_raising(copy, target)[0]
        check(n)
        assert _bytes_in_stats() == n, f"stats counted the copy wrong, raise at {target}"


def _bytes_in_stats() -> int:
    return sum(route.bytes for route in zcopy.stats().routes.values())


def _peer_got_exactly(peer: socket.socket, expected: bytes) -> None:
    assert _read_exactly(peer, len(expected)) == expected
    peer.setblocking(False)
    try:
        with pytest.raises(BlockingIOError):
            peer.recv(1)  # and nothing more
    finally:
        peer.settimeout(10)


@pytest.mark.parametrize("fresh", [False, True], ids=["known-file", "new-file-object"])
def test_a_raise_between_any_two_steps_keeps_count_and_position(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket], fresh: bool
) -> None:
    """A buffered reader part-way, copied to EOF: the size probe moves its position to
    EOF before the call, so every exit must put it back at start + bytes_copied."""
    out, peer = pair
    path, data = _file(tmp_path, 4 * KIB)
    files = [open(path, "rb")]  # noqa: SIM115 (closed below)

    def copy() -> int:
        if fresh:  # the classification (fstat) runs too, every time
            files[0].close()
            files[0] = open(path, "rb")  # noqa: SIM115
        files[0].seek(0)
        files[0].read(100)
        return zcopy.copy(out, files[0])

    def check(n: int) -> None:
        assert files[0].tell() == 100 + n
        assert files[0].read(7) == data[100 + n : 107 + n]  # the read-ahead agrees too
        _peer_got_exactly(peer, data[100 : 100 + n])

    try:
        raise_between_every_step(copy, check)
    finally:
        files[0].close()


def test_a_raise_anywhere_in_a_counted_copy_and_a_section(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    path, data = _file(tmp_path, 8 * KIB)
    seen: list[int] = []
    with open(path, "rb", buffering=0) as f:

        def counted() -> int:
            f.seek(10)
            return zcopy.copy(out, f, 1000)

        def check_counted(n: int) -> None:
            assert f.tell() == 10 + n
            _peer_got_exactly(peer, data[10 : 10 + n])

        raise_between_every_step(counted, check_counted)

        def section() -> int:
            seen.clear()
            f.seek(5)
            return zcopy.copy(zcopy.observe(out, seen.append), zcopy.section(f, 100, 3000))

        def check_section(n: int) -> None:
            assert f.tell() == 5  # a section leaves the position alone, on every exit
            assert sum(seen) in (0, n)  # the observer hears of the bytes, or is left short
            _peer_got_exactly(peer, data[100 : 100 + n])

        raise_between_every_step(section, check_section)


def test_a_raise_anywhere_in_a_write_and_in_acopy(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    out, peer = pair
    sink = [io.BytesIO()]

    def write() -> int:
        sink[0] = io.BytesIO()
        return zcopy.copy(sink[0], b"0123456789", 7)

    def check_write(n: int) -> None:
        assert sink[0].getvalue() == b"0123456"[:n]

    raise_between_every_step(write, check_write)

    path, data = _file(tmp_path, 4 * KIB)
    out.setblocking(False)
    with open(path, "rb") as f:

        def acopy() -> int:
            f.seek(3)
            return asyncio.run(zcopy.acopy(out, f))

        def check_acopy(n: int) -> None:
            assert f.tell() == 3 + n
            _peer_got_exactly(peer, data[3 : 3 + n])

        raise_between_every_step(acopy, check_acopy)


def test_the_classification_cache_forgets_dead_file_objects(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    """One entry per file object copied from, gone with the object: a server that opens a
    file per request must not grow the cache, nor leave dead keys behind. A dead key keeps
    the hash of its object's address, which the next file object mostly reuses: such keys
    piled up in one probe chain, and each lookup walked them all."""
    out, peer = pair
    path, data = _file(tmp_path, 16)
    before = len(_direct._files)
    for _ in range(3000):
        with open(path, "rb") as f:
            assert zcopy.copy(out, f) == 16
        assert weakref.ref(f) in _direct._files  # remembered while it lives
    del f
    assert _read_exactly(peer, 3000 * 16) == data * 3000
    assert all(key() is not None for key in _direct._files)  # no dead key stayed
    assert len(_direct._files) <= before


def test_the_stats_log_keeps_no_file_object_alive(
    tmp_path: Path, pair: tuple[socket.socket, socket.socket]
) -> None:
    """A logged copy stays in the stats log until folded; the file it copied from must not:
    ``copy(sock, open(path, "rb"))`` closes the file when the call's last reference goes."""
    out, peer = pair
    path, data = _file(tmp_path, 1000)
    zcopy.reset_stats()
    f = open(path, "rb")  # noqa: SIM115 (closed by its last reference going, the point)
    gone = weakref.ref(f)
    assert zcopy.copy(out, f) == 1000
    assert len(_stats.one_call["sendfile"]) == 1  # logged, not folded yet
    del f
    assert gone() is None
    assert _read_exactly(peer, 1000) == data
    assert zcopy.stats().routes["sendfile"].calls == 1
