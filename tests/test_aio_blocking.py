"""acopy() never blocks the event loop: a heartbeat on the loop keeps ticking while a peer stalls.

Issue 9, finding 6: a blocking socket behind ``makefile("rb")``, a blocking
socket or pipe passed as a raw fd, froze the loop for as long as the peer
delayed. Each endpoint here is either refused before a byte moves (judged by
the fd's ``O_NONBLOCK`` or the socket's timeout, not by the Python type) or
waited on through the loop; either way the heartbeat's longest gap stays short.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import tcp_pair

import zcopy

pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]

DELAY = 1.5  # the peer's stall
TICK = 0.01
MAX_GAP = 0.6  # a loop that stalled shows a gap of DELAY; a busy CI machine, a few 100 ms


async def _with_heartbeat(coro: object) -> tuple[object, float]:
    """Run ``coro`` while a task ticks every 10 ms; return its outcome and the longest gap."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(TICK)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(TICK * 3)  # the heartbeat is running before the copy starts
    try:
        outcome: object = await asyncio.wait_for(coro, 30)  # type: ignore[arg-type]
    except Exception as exc:  # the outcome is judged by the caller
        outcome = exc
    await asyncio.sleep(TICK * 3)
    stop.set()
    await beat
    return outcome, max(gaps)


def _later(delay: float, action: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        try:
            action()
        except OSError:
            pass  # the other end was closed by a refused test: nothing to deliver

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def _case(name: str, stack: ExitStack, tmp_path: Path) -> tuple[object, object]:
    """(dst, src) with one blocking end whose peer delays, cleaned up by ``stack``.

    The delayed peer is joined before any fd closes (ExitStack unwinds in reverse),
    so it never writes into an fd number reused by someone else.
    """
    out = stack.enter_context(open(tmp_path / "out", "wb"))  # noqa: SIM115

    def pair() -> tuple[socket.socket, socket.socket]:
        x, y = tcp_pair()
        stack.callback(x.close)
        stack.callback(y.close)
        return x, y

    def pipe() -> tuple[int, int]:
        r, w = os.pipe()
        stack.callback(os.close, r)
        stack.callback(os.close, w)
        return r, w

    def later(action: Callable[[], object]) -> None:
        stack.callback(_later(DELAY, action).join, 10)

    if name == "makefile-rb over a blocking TCP socket":
        a, b = pair()
        later(lambda: b.sendall(b"late"))
        return out, stack.enter_context(a.makefile("rb"))
    if name == "makefile-rb over a socket with a timeout":
        a, b = pair()
        a.settimeout(5)
        later(lambda: b.sendall(b"late"))
        return out, stack.enter_context(a.makefile("rb"))
    if name == "blocking TCP socket as a raw fd (src)":
        a, b = pair()
        later(lambda: b.sendall(b"late"))
        return out, a.fileno()
    if name == "blocking TCP socket as a raw fd (dst)":
        a, b = pair()  # b never reads: 64 MiB fill both buffers
        return a.fileno(), b"x" * (64 << 20)
    if name == "blocking pipe as a raw fd (src)":
        r, w = pipe()
        later(lambda: os.write(w, b"late"))
        return out, r
    if name == "blocking pipe file object (src)":
        r, w = pipe()
        later(lambda: os.write(w, b"late"))
        return out, stack.enter_context(open(r, "rb", closefd=False))
    assert name == "blocking pipe as a raw fd (dst)"
    r, w = pipe()  # nobody reads: the pipe holds 64 KiB of the 1 MiB
    return w, b"x" * (1 << 20)


CASES = [
    "makefile-rb over a blocking TCP socket",
    "makefile-rb over a socket with a timeout",
    "blocking TCP socket as a raw fd (src)",
    "blocking TCP socket as a raw fd (dst)",
    "blocking pipe as a raw fd (src)",
    "blocking pipe file object (src)",
    "blocking pipe as a raw fd (dst)",
]


@pytest.mark.parametrize("case", CASES)
def test_blocking_endpoint_is_refused_and_the_loop_keeps_ticking(
    case: str, stack: ExitStack, tmp_path: Path
) -> None:
    dst, src = _case(case, stack, tmp_path)
    outcome, gap = asyncio.run(_with_heartbeat(zcopy.acopy(dst, src)))
    assert isinstance(outcome, ValueError), outcome
    assert "non-blocking" in str(outcome) and "block the event loop" in str(outcome)
    assert getattr(outcome, "bytes_copied", 0) == 0
    assert gap < MAX_GAP, f"the loop stalled {gap:.2f}s"


def test_nonblocking_makefile_source_waits_on_the_loop(tmp_path: Path) -> None:
    a, b = tcp_pair()
    with a, b, open(tmp_path / "out", "wb") as out:
        a.setblocking(False)
        reader = a.makefile("rb")

        def send() -> None:
            b.sendall(b"late bytes")
            b.shutdown(socket.SHUT_WR)

        sender = _later(DELAY, send)
        started = time.monotonic()
        outcome, gap = asyncio.run(_with_heartbeat(zcopy.acopy(out, reader)))
        assert outcome == len(b"late bytes")
        assert time.monotonic() - started >= DELAY - 0.1, "the copy did wait for the peer"
        assert gap < MAX_GAP, f"the loop stalled {gap:.2f}s"
        sender.join(10)
        reader.close()


def test_nonblocking_pipe_fd_waits_on_the_loop(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        with open(tmp_path / "out", "wb") as out:

            def write() -> None:
                os.write(w, b"late")
                os.close(w)

            writer = _later(DELAY, write)
            outcome, gap = asyncio.run(_with_heartbeat(zcopy.acopy(out, r)))
            writer.join(10)
        assert outcome == 4
        assert gap < MAX_GAP, f"the loop stalled {gap:.2f}s"
        assert (tmp_path / "out").read_bytes() == b"late"
    finally:
        os.close(r)


def test_regular_files_and_memory_devices_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "src"
    path.write_bytes(b"abc" * 1000)
    with open(path, "rb") as f, open(os.devnull, "wb") as null:
        assert asyncio.run(zcopy.acopy(null, f)) == 3000
    with open("/dev/zero", "rb") as zero, open(tmp_path / "z", "wb") as out:
        assert asyncio.run(zcopy.acopy(out, zero, 5000)) == 5000
