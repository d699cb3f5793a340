"""zcopy.relay on real TCP sockets: x <-> [a relay b] <-> y, with x and y driven by threads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import socket
import struct
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from conftest import Drain, open_fds, start_feeding, tcp_pair

import zcopy
from zcopy import _pipes
from zcopy._relay import relay_plan

Chain = tuple[socket.socket, socket.socket, socket.socket, socket.socket]
T = TypeVar("T")
KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
def chain() -> Iterator[Chain]:
    x, a = tcp_pair()
    b, y = tcp_pair()
    for s in (a, b):
        s.setblocking(False)
    try:
        yield x, a, b, y
    finally:
        for s in (x, a, b, y):
            s.close()


def _run(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def _pipe_fds() -> set[str]:
    """Pipes this process holds, less the idle ones the pool keeps on purpose."""
    found = set()
    for fd in open_fds():
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("pipe:"):
                found.add(f"{fd}:{link}")
    return found


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "no-splice"])
@pytest.mark.parametrize("size", [0, 1, 64 * KIB, MIB])
def test_both_directions_at_once_byte_exact(
    chain: Chain, no_fd_leak: None, size: int, splice: bool
) -> None:
    x, a, b, y = chain
    up, down = os.urandom(size), os.urandom(size + 7)
    at_y, at_x = Drain(y), Drain(x)
    senders = [start_feeding(x, up), start_feeding(y, down)]
    assert _run(zcopy.relay(a, b, splice=splice)) == (len(up), len(down))
    for t in senders:
        t.join(10)
    assert hashlib.sha256(at_y.result()).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(at_x.result()).digest() == hashlib.sha256(down).digest()


class _Hasher:
    """Reads a socket to EOF, hashing as it goes (256 MiB never sits in memory)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.h, self.n = sock, hashlib.sha256(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buf = bytearray(MIB)
        while n := self.sock.recv_into(buf):
            self.h.update(memoryview(buf)[:n])
            self.n += n

    def digest(self) -> bytes:
        self.thread.join(120)
        assert not self.thread.is_alive()
        return self.h.digest()


def test_256_mib_one_way_while_1_mib_flows_back(chain: Chain, no_fd_leak: None) -> None:
    x, a, b, y = chain
    block = os.urandom(MIB)
    want = hashlib.sha256()
    for _ in range(256):
        want.update(block)
    back = os.urandom(MIB)

    def pour() -> None:
        view = memoryview(block)
        for _ in range(256):
            x.sendall(view)
        x.shutdown(socket.SHUT_WR)

    at_y, at_x = _Hasher(y), Drain(x)
    t = threading.Thread(target=pour, daemon=True)
    t.start()
    back_t = start_feeding(y, back)
    assert _run(zcopy.relay(a, b), timeout=120) == (256 * MIB, MIB)
    t.join(30)
    back_t.join(30)
    assert at_y.digest() == want.digest()
    assert at_x.result() == back


@pytest.mark.parametrize("first", ["x", "y"])
def test_half_close_passes_on_and_other_way_keeps_flowing(chain: Chain, first: str) -> None:
    x, a, b, y = chain
    closer, other = (x, y) if first == "x" else (y, x)

    def talk() -> bytes:
        closer.sendall(b"question")
        closer.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := other.recv(100):
            got += chunk
        # other saw EOF (the half-close reached it) and may still answer.
        other.sendall(b"answer after EOF")
        other.shutdown(socket.SHUT_WR)
        return got

    async def main() -> tuple[tuple[int, int], bytes]:
        relaying = asyncio.ensure_future(zcopy.relay(a, b))
        heard = await asyncio.to_thread(talk)
        return await relaying, heard

    counts, heard = _run(main())
    assert heard == b"question"
    answer = b""
    while chunk := closer.recv(100):
        answer += chunk
    assert answer == b"answer after EOF"
    assert sorted(counts) == [8, 16]


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("side", ["client", "upstream"])
def test_reset_on_either_side_tears_both_down(side: str, no_fd_leak: None) -> None:
    x, a = tcp_pair()
    b, y = tcp_pair()
    for s in (a, b):
        s.setblocking(False)
    resetter, survivor = (x, y) if side == "client" else (y, x)
    try:
        survivor.sendall(b"s" * 1000)  # the survivor's direction has bytes in flight too

        async def main() -> BaseException | None:
            relaying = asyncio.ensure_future(zcopy.relay(a, b))
            await asyncio.sleep(0.05)
            resetter.sendall(b"r" * 1000)
            await asyncio.sleep(0.05)
            _reset(resetter)
            try:
                await relaying
            except OSError as exc:
                return exc
            return None

        exc = _run(main())
        assert isinstance(exc, ConnectionError), exc
        assert len(exc.bytes_relayed) == 2  # type: ignore[attr-defined]
        a.close()
        b.close()
        # The survivor hears a reset, not a clean EOF: the tear-down is passed on.
        survivor.settimeout(10)
        with pytest.raises(ConnectionResetError):
            while survivor.recv(65536):
                pass
    finally:
        for s in (x, a, b, y):
            s.close()


def test_idle_timeout_raises_and_closes_politely(chain: Chain, no_fd_leak: None) -> None:
    _x, a, b, y = chain
    with pytest.raises(TimeoutError, match="idle"):
        _run(zcopy.relay(a, b, idle_timeout=0.2), timeout=30)
    a.close()
    b.close()
    y.settimeout(10)
    assert y.recv(10) == b""  # FIN, not RST: an idle close is not an error


def test_cancel_leaves_nothing_registered_or_held(chain: Chain, no_fd_leak: None) -> None:
    x, a, b, _y = chain
    pipes_before = _pipe_fds()
    # More than the socket buffers hold, y never reads: bytes sit in a pipe at the cancel.
    pour = start_feeding(x, b"z" * (8 * MIB))

    async def main() -> int:
        loop = asyncio.get_running_loop()
        relaying = asyncio.ensure_future(zcopy.relay(a, b))
        await asyncio.sleep(0.2)
        relaying.cancel()
        with pytest.raises(asyncio.CancelledError):
            await relaying
        selector = loop._selector  # type: ignore[attr-defined]
        return sum(1 for s in (a, b) if s.fileno() in selector.get_map())

    assert _run(main()) == 0
    assert _pipe_fds() == pipes_before
    _reset(a)  # unblocks the sender
    pour.join(10)


def test_idle_relays_hold_no_pipe(no_fd_leak: None) -> None:
    pipes_before = _pipe_fds()
    pairs = [(*tcp_pair(), *tcp_pair()) for _ in range(20)]
    try:
        for _, a, b, _ in pairs:
            a.setblocking(False)
            b.setblocking(False)

        async def main() -> set[str]:
            tasks = [asyncio.ensure_future(zcopy.relay(a, b)) for _, a, b, _ in pairs]
            for x, _, _, y in pairs:  # one exchange each, then silence
                x.sendall(b"ping")
                y.sendall(b"pong")
            await asyncio.sleep(0.3)
            held = _pipe_fds() - pipes_before
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return held

        assert _run(main()) == set()
        assert len(_pipes._idle) <= _pipes._MAX_IDLE
    finally:
        for group in pairs:
            for s in group:
                s.close()


def test_no_splice_route_and_reason_are_visible(chain: Chain) -> None:
    x, a, b, y = chain
    plan = relay_plan(b, a, splice=False)
    assert plan.route is zcopy.Route.USERSPACE and "splice turned off" in str(plan)
    assert relay_plan(b, a).route is zcopy.Route.SPLICE
    zcopy.reset_stats()
    at_y, at_x = Drain(y), Drain(x)
    start_feeding(x, b"u" * 1000)
    start_feeding(y, b"d" * 10)
    assert _run(zcopy.relay(a, b, splice=False)) == (1000, 10)
    assert at_y.result() == b"u" * 1000 and at_x.result() == b"d" * 10
    st = zcopy.stats()
    assert st.routes["userspace"].bytes == 1010
    assert "splice" not in st.routes
    assert st.fallbacks["no-splice"] == 2


def test_blocking_socket_is_refused(chain: Chain) -> None:
    x, _a, b, _y = chain
    with pytest.raises(ValueError, match="non-blocking"):
        _run(zcopy.relay(x, b))


def test_strict_mode_refuses_no_splice(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    x, a, b, y = chain
    monkeypatch.setenv(zcopy.STRICT_ENV, "1")
    with pytest.raises(zcopy.FastPathLost, match="splice turned off"):
        _run(zcopy.relay(a, b, splice=False))
    x.sendall(b"still strict-ok")
    x.shutdown(socket.SHUT_WR)
    y.shutdown(socket.SHUT_WR)
    assert _run(zcopy.relay(a, b)) == (15, 0)
    assert y.recv(100) == b"still strict-ok"


def test_slow_but_moving_relay_is_not_idle_and_every_chunk_is_heard(chain: Chain) -> None:
    """Bytes every 0.12 s for 1.2 s under a 0.8 s idle timeout: the timer re-arms, never fires."""
    x, a, b, y = chain
    heard: list[tuple[int, int]] = []
    at_y = Drain(y)

    def trickle() -> None:
        for i in range(10):
            time.sleep(0.12)
            x.sendall(b"%d" % i)
        x.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    y.shutdown(socket.SHUT_WR)
    relaying = zcopy.relay(a, b, idle_timeout=0.8, on_bytes=lambda i, n: heard.append((i, n)))
    assert _run(relaying) == (10, 0)
    sender.join(10)
    assert at_y.result() == b"0123456789"
    assert {i for i, _ in heard} == {0} and sum(n for _, n in heard) == 10


def test_an_end_that_cannot_be_written_is_refused_and_nothing_stays_registered(
    no_fd_leak: None,
) -> None:
    """a is a pipe's read end: a->b may start, b->a cannot; the started way is torn down."""
    r, w = os.pipe()
    b, y = tcp_pair()
    os.set_blocking(r, False)
    b.setblocking(False)
    pipes_before = _pipe_fds()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        with pytest.raises(io.UnsupportedOperation, match="read-only"):
            await zcopy.relay(r, b)  # type: ignore[arg-type]
        selector = loop._selector  # type: ignore[attr-defined]
        return sum(1 for fd in (r, b.fileno()) if fd in selector.get_map())

    try:
        assert _run(main()) == 0
        os.write(w, b"not taken")  # nothing moved it: no copy is left reading r
        assert os.read(r, 100) == b"not taken"
        assert _pipe_fds() == pipes_before
    finally:
        for fd in (r, w):
            os.close(fd)
        b.close()
        y.close()
