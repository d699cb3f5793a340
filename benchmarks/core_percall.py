"""Per-call overhead of ``zcopy.copy`` for small copies, beside the bare syscalls it wraps.

For 4 KiB and 64 KiB: file -> TCP socket (``os.sendfile``), for a ``BufferedReader``
(the same one, rewound, and a new ``open()`` per call, opened and closed inside the
timed call on both sides) and a raw ``FileIO`` copied to EOF, a ``section`` of a
``FileIO``, and ``acopy`` of ``observe(sock)`` and a section (what ``zcopy serve`` does
per response, timed inside one running loop); bytes -> ``BytesIO`` (``BytesIO.write``);
TCP socket -> TCP socket (``os.splice`` in and out of a pipe). Each call is timed on its own
(``perf_counter_ns``) in this process, pinned to the first CPU; the receiving end
is drained by a child process pinned to the second, so the copy never waits for
room. Feeding a source socket is not timed, nor is rewinding the source file. Each
row starts with an untimed warm-up of a tenth of the calls, both sides. A row is the
median over repeats of each repeat's median call, with the spread (min-max) over
repeats. Used by ``benchmarks/core_copy.py --per-call``.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import zcopy
from zcopy.tools._proc import median, spread

KIB = 1 << 10
SIZES = (4 * KIB, 64 * KIB)
_DRAIN = (
    "import socket, sys\n"
    "s = socket.socket(fileno=int(sys.argv[1]))\n"
    "buf = bytearray(1 << 20)\n"
    "while s.recv_into(buf):\n"
    "    pass\n"
)

Call = Callable[[], object]


def _cpus() -> tuple[int, int | None]:
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[0], (allowed[1] if len(allowed) > 1 else None)


@contextmanager
def drained_socket() -> Iterator[socket.socket]:
    """A TCP socket whose peer is read to exhaustion by a child on the other CPU."""
    _, other = _cpus()
    with socket.create_server(("127.0.0.1", 0)) as lst:
        out = socket.create_connection(lst.getsockname())
        peer, _ = lst.accept()
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    argv = [sys.executable, "-c", _DRAIN, str(peer.fileno())]
    if other is not None:
        argv = ["taskset", "-c", str(other), *argv]
    child = subprocess.Popen(argv, pass_fds=[peer.fileno()], stdin=subprocess.DEVNULL)
    peer.close()
    try:
        yield out
    finally:
        out.close()
        child.wait(timeout=30)


def _time(call: Call, calls: int, feed: Call | None = None) -> float:
    """The median of ``calls`` single calls, in microseconds (``feed`` runs untimed before each).

    A call that returns a coroutine is awaited inside one running loop, timed per await.
    """
    clock = time.perf_counter_ns
    samples = []
    for _ in range(calls):
        if feed is not None:
            feed()
        t0 = clock()
        pending = call()
        if asyncio.iscoroutine(pending):
            pending.close()  # a coroutine row: timed below, inside its loop
            return asyncio.run(_time_awaits(call, calls, feed))
        samples.append(clock() - t0)
    return statistics.median(samples) / 1000


async def _time_awaits(call: Call, calls: int, feed: Call | None) -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(calls):
        if feed is not None:
            feed()
        t0 = clock()
        await call()  # type: ignore[misc]
        samples.append(clock() - t0)
    return statistics.median(samples) / 1000


def _pairs(
    size: int, tmp: Path, out: socket.socket
) -> Iterator[tuple[str, str, Call, Call, Call | None]]:
    """(row, raw label, zcopy call, raw call, untimed feed) for one size."""
    path = tmp / f"{size}.bin"
    path.write_bytes(os.urandom(size))
    f = open(path, "rb")  # noqa: SIM115 (closed when the process ends: the rows are timed)
    fd = f.fileno()
    sock_fd = out.fileno()

    def rewind() -> None:
        f.seek(0)

    def raw_file() -> None:
        sent = 0
        while sent < size:
            sent += os.sendfile(sock_fd, fd, sent, size - sent)

    yield "file -> socket", "os.sendfile", lambda: zcopy.copy(out, f), raw_file, rewind

    def fresh_zcopy() -> None:
        with open(path, "rb") as g:
            zcopy.copy(out, g)

    def fresh_raw() -> None:
        with open(path, "rb") as g:
            sent = 0
            while sent < size:
                sent += os.sendfile(sock_fd, g.fileno(), sent, size - sent)

    yield "open() per call -> socket", "open + os.sendfile", fresh_zcopy, fresh_raw, None
    raw = open(path, "rb", buffering=0)  # noqa: SIM115 (as f)

    def rewind_raw() -> None:
        raw.seek(0)

    yield "FileIO -> socket", "os.sendfile", lambda: zcopy.copy(out, raw), raw_file, rewind_raw
    yield ("section -> socket", "os.sendfile", lambda: zcopy.copy(out, zcopy.section(raw, 0, size)),
           raw_file, None)
    observed = zcopy.observe(out, lambda n: None)

    def nonblocking() -> None:  # acopy wants a non-blocking socket (measure() restores it)
        out.setblocking(False)

    def raw_file_nonblocking() -> None:
        sent = 0
        while sent < size:
            try:
                sent += os.sendfile(sock_fd, fd, sent, size - sent)
            except BlockingIOError:
                select.select([], [sock_fd], [], 10)

    yield ("acopy section -> observed socket", "os.sendfile",
           lambda: zcopy.acopy(observed, zcopy.section(raw, 0, size)), raw_file_nonblocking,
           nonblocking)

    data = os.urandom(size)
    yield ("bytes -> BytesIO", "BytesIO.write", lambda: zcopy.copy(io.BytesIO(), data),
           lambda: io.BytesIO().write(data), None)

    with socket.create_server(("127.0.0.1", 0)) as lst:
        feeder = socket.create_connection(lst.getsockname())
        src, _ = lst.accept()
    feeder.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    pipe_r, pipe_w = os.pipe()

    def feed() -> None:
        feeder.sendall(data)
        while src_ready() < size:  # the whole chunk is in src before the timed call
            pass

    def src_ready() -> int:
        return int.from_bytes(fcntl.ioctl(src.fileno(), termios.FIONREAD, b"\0\0\0\0"), "little")

    def raw_splice() -> None:
        moved = 0
        while moved < size:
            n = os.splice(src.fileno(), pipe_w, size - moved)
            moved += n
            while n:
                n -= os.splice(pipe_r, sock_fd, n)

    yield ("socket -> socket", "os.splice x2", lambda: zcopy.copy(out, src, size), raw_splice,
           feed)


def measure(calls: int = 2000, repeat: int = 5) -> list[dict[str, Any]]:
    """Rows of per-call figures (µs): zcopy and the raw syscalls, medians and spread."""
    first, _ = _cpus()
    os.sched_setaffinity(0, {first})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="zcopy-percall-") as tmp, drained_socket() as out:
        for size in SIZES:
            for row, raw_label, zc, raw, feed in _pairs(size, Path(tmp), out):
                zc_us: list[float | None] = []
                raw_us: list[float | None] = []
                # Untimed warm-up of both: the first row otherwise ran while the draining
                # child was still starting, and measured 0.1-0.25x higher than when second.
                _time(raw, calls // 10, feed)
                _time(zc, calls // 10, feed)
                for _ in range(repeat):  # interleaved: a noisy moment hurts both alike
                    raw_us.append(_time(raw, calls, feed))
                    zc_us.append(_time(zc, calls, feed))
                out.setblocking(True)
                ratios = [z / r for z, r in zip(zc_us, raw_us, strict=True) if z and r]
                rows.append({
                    "copy": row, "size": size, "raw": raw_label,
                    "zcopy_us": median(zc_us), "zcopy_us_spread": spread(zc_us),
                    "raw_us": median(raw_us), "raw_us_spread": spread(raw_us),
                    "ratio": median(ratios), "ratio_spread": spread(ratios),
                })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| copy | size | zcopy.copy µs (median) | spread | raw | raw µs | spread "
             "| ratio (median) | spread |", "|---|--:|--:|--:|---|--:|--:|--:|--:|"]
    for r in rows:
        zs, rs, qs = r["zcopy_us_spread"], r["raw_us_spread"], r["ratio_spread"]
        lines.append(
            f"| {r['copy']} | {int(r['size']) // KIB} KiB | {r['zcopy_us']:.2f} | {_span(zs)} "
            f"| {r['raw']} | {r['raw_us']:.2f} | {_span(rs)} | {r['ratio']:.1f}x | {_span(qs, 1)} |"
        )
    return "\n".join(lines)


def _span(s: object, digits: int = 2) -> str:
    if not isinstance(s, dict):
        return "-"
    return f"{s['min']:.{digits}f}-{s['max']:.{digits}f}"


if __name__ == "__main__":
    print(table(measure()))
