"""acopy(): the same routes on asyncio; cancellation leaves nothing registered on the loop."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import selectors
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Drain, JustReader, start_feeding, tcp_pair

import zcopy

# Every test here must leave no fd behind; fallbacks are expected, not warned about.
pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]

DATA = os.urandom(1 << 20)



def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def run(coro: object) -> object:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


def _registered(loop: asyncio.AbstractEventLoop, fd: int) -> bool:
    selector: selectors.BaseSelector = loop._selector  # type: ignore[attr-defined]
    return fd in selector.get_map()


def test_file_to_socket(tmp_path: Path) -> None:
    path = tmp_path / "src"
    path.write_bytes(DATA)
    a, b = tcp_pair()
    with a, b, open(path, "rb") as f:
        a.setblocking(False)
        drain = Drain(b)
        assert run(zcopy.acopy(a, f)) == len(DATA)
        assert f.tell() == len(DATA)
        a.shutdown(socket.SHUT_WR)
        assert sha(drain.result(30)) == sha(DATA)


def test_socket_to_socket() -> None:
    a, feed = tcp_pair()
    c, d = tcp_pair()
    with a, feed, c, d:
        a.setblocking(False)
        c.setblocking(False)
        feeder = start_feeding(feed, DATA)
        drain = Drain(d)
        assert zcopy.explain(c, a).route is zcopy.Route.SPLICE
        assert run(zcopy.acopy(c, a)) == len(DATA)
        c.shutdown(socket.SHUT_WR)
        assert sha(drain.result(30)) == sha(DATA)
        feeder.join(30)


def test_socket_to_file(tmp_path: Path) -> None:
    a, feed = tcp_pair()
    path = tmp_path / "dst"
    with a, feed, open(path, "wb") as f:
        a.setblocking(False)
        feeder = start_feeding(feed, DATA)
        assert run(zcopy.acopy(f, a, len(DATA) - 3)) == len(DATA) - 3
        feeder.join(30)
    assert sha(path.read_bytes()) == sha(DATA[:-3])


@pytest.mark.parametrize(
    ("make_src", "route"),
    [(lambda: DATA, zcopy.Route.WRITE), (lambda: JustReader(DATA), zcopy.Route.USERSPACE)],
    ids=["buffer-write", "opaque-userspace"],
)
def test_buffer_and_userspace_routes(make_src: Callable[[], object], route: zcopy.Route) -> None:
    a, b = tcp_pair()
    with a, b:
        a.setblocking(False)
        drain = Drain(b)
        zcopy.reset_stats()
        assert run(zcopy.acopy(a, make_src())) == len(DATA)
        a.shutdown(socket.SHUT_WR)
        assert drain.result(30) == DATA
    assert {name: r.bytes for name, r in zcopy.stats().routes.items()} == {
        route.value: len(DATA)
    }


@pytest.mark.parametrize("side", ["src", "dst"])
@pytest.mark.parametrize("timeout", [None, 5.0])
def test_blocking_socket_is_refused(side: str, timeout: float | None) -> None:
    a, b = tcp_pair()
    with a, b:
        a.settimeout(timeout)
        with pytest.raises(ValueError, match="non-blocking"):
            if side == "dst":
                run(zcopy.acopy(a, b"abc"))
            else:
                run(zcopy.acopy(bytearray(), a))


def test_strict_mode_in_acopy() -> None:
    a, b = tcp_pair()
    with a, b:
        a.setblocking(False)
        with pytest.raises(zcopy.FastPathLost):
            run(zcopy.acopy(a, JustReader(), require_zero_copy=True))


@pytest.mark.parametrize("src_kind", ["file", "socket", "bytes"])
def test_cancellation_mid_transfer(tmp_path: Path, src_kind: str) -> None:
    big = os.urandom(1 << 20) * 16
    path = tmp_path / "src"
    path.write_bytes(big)
    a, b = tcp_pair()  # b is never read until the copy is cancelled
    c, feed = tcp_pair()
    f = open(path, "rb")  # noqa: SIM115
    feeder = threading.Thread(target=_feed_quietly, args=(feed, big), daemon=True)
    feeder.start()
    with a, b, c, feed, f:
        a.setblocking(False)
        c.setblocking(False)
        src: object = {"file": f, "socket": c, "bytes": big}[src_kind]
        seen = []

        async def main() -> tuple[int, bool]:
            loop = asyncio.get_running_loop()
            moving = asyncio.Event()

            def on_bytes(n: int) -> None:
                seen.append(n)
                moving.set()

            task = asyncio.create_task(zcopy.acopy(a, zcopy.observe(src, on_bytes)))
            await asyncio.wait_for(moving.wait(), 30)
            for _ in range(5):  # let it fill the socket buffers and park on the loop
                await asyncio.sleep(0)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            left = _registered(loop, a.fileno()) or _registered(loop, c.fileno())
            assert not loop.remove_writer(a.fileno())
            assert not loop.remove_reader(c.fileno())
            return info.value.bytes_copied, left  # type: ignore[attr-defined]

        copied, left_registered = asyncio.run(main())
        assert not left_registered, "an fd stayed registered on the loop"
        assert copied > 0
        assert sum(seen) == copied, "the observers heard exactly what was delivered"
        if src_kind == "file":
            assert f.tell() == copied
        a.shutdown(socket.SHUT_WR)
        got = Drain(b).result(30)
        assert len(got) == copied, "the peer receives exactly bytes_copied"
        assert got == big[:copied]
        c.close()
        feeder.join(30)


def _feed_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def test_pipe_to_unix_socket_straight_splice() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)

        def feed() -> None:
            view = memoryview(DATA * 3)
            while view:
                view = view[os.write(w, view) :]
            os.close(w)

        feeder = threading.Thread(target=feed)
        feeder.start()
        drain = Drain(b)
        try:
            assert str(zcopy.explain(a, r)).endswith("(straight between them)")
            assert run(zcopy.acopy(a, r)) == 3 * len(DATA)
        finally:
            feeder.join(30)
            os.close(r)
        a.shutdown(socket.SHUT_WR)
        assert sha(drain.result(30)) == sha(DATA * 3)


def test_an_observer_that_cancels_the_copy_on_its_last_chunk_leaves_no_loop_error() -> None:
    # The observer runs inside the route; cancelling the awaiting task there and then
    # reaching EOF must not try to resolve a future that is already cancelled.
    errors: list[dict[str, object]] = []

    async def main() -> tuple[int | None, int]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        a, b = socket.socketpair()
        a.setblocking(False)
        out = io.BytesIO()
        task = asyncio.current_task()
        assert task is not None
        seen: list[int] = []

        def on_bytes(n: int) -> None:
            seen.append(n)
            if len(seen) == 2:
                task.cancel()

        loop.call_later(0.02, b.send, b"x" * 1000)
        loop.call_later(0.06, b.send, b"y" * 1000)
        loop.call_later(0.06, b.shutdown, socket.SHUT_WR)
        copied: int | None = None
        try:
            await zcopy.acopy(out, zcopy.observe(a, on_bytes))
        except asyncio.CancelledError as exc:
            copied = getattr(exc, "bytes_copied", None)
            task.uncancel()
        await asyncio.sleep(0.05)
        a.close()
        b.close()
        return copied, len(out.getvalue())

    copied, delivered = asyncio.run(main())
    assert copied == delivered == 2000
    assert errors == []
