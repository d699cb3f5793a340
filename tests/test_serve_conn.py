"""The connection engine: deadlines that bytes never extend, turns, the request cap, linger."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from zcopy.serve.conn import BODY, BUSY, HEAD, IDLE, LINGER, TURN, Conn, Timeouts, sweep
from zcopy.serve.parser import Request

LIMITS = Timeouts(header=10, keepalive=15, body=60, send=30, linger=2, max_requests=3)


def with_conn(body: Callable[[Conn, socket.socket], Awaitable[None]]) -> None:
    """Run ``body(conn, peer)`` on a socketpair inside an event loop."""
    a, b = socket.socketpair()
    a.setblocking(False)

    async def main() -> None:
        conn = Conn(a, "local", asyncio.get_running_loop(), LIMITS)
        try:
            await body(conn, b)
        finally:
            conn.close()

    try:
        asyncio.run(main())
    finally:
        b.close()


def left(conn: Conn) -> float:
    return round(conn.deadline - conn.loop.time())


def test_header_deadline_runs_from_accept_and_bytes_never_move_it() -> None:
    async def body(conn: Conn, peer: socket.socket) -> None:
        assert (conn.state, left(conn)) == (HEAD, 10)
        first = conn.deadline
        for chunk in (b"\r\n", b"GET / HT", b"TP/1.1\r\nX: 1\r\n"):
            peer.send(chunk)
            conn.reader.feed(await conn.recv())
            conn.received()
            assert (conn.state, conn.deadline) == (HEAD, first)

    with_conn(body)


def test_first_byte_after_keep_alive_starts_the_header_clock_once() -> None:
    async def body(conn: Conn, peer: socket.socket) -> None:
        conn.responding()
        conn.responded()
        assert (conn.state, left(conn)) == (IDLE, 15)
        peer.send(b"\r\n")
        conn.reader.feed(await conn.recv())
        conn.received()
        assert (conn.state, left(conn)) == (HEAD, 10)
        started = conn.deadline
        await asyncio.sleep(0.05)
        peer.send(b"\r\n")
        conn.reader.feed(await conn.recv())
        conn.received()
        assert conn.deadline == started  # an empty line does not restart it

    with_conn(body)


def test_body_gets_its_own_total_deadline() -> None:
    async def body(conn: Conn, peer: socket.socket) -> None:
        peer.send(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab")
        conn.reader.feed(await conn.recv())
        conn.received()
        assert (conn.state, left(conn)) == (BODY, 60)
        started = conn.deadline
        peer.send(b"c")
        conn.reader.feed(await conn.recv())
        conn.received()
        assert conn.deadline == started
        conn.responding()
        conn.responded()  # a pipelined body still pending after a response: its own clock
        assert (conn.state, left(conn)) == (BODY, 60)

    with_conn(body)


@pytest.mark.parametrize(
    ("state", "reason"),
    [(HEAD, "header timeout"), (IDLE, "idle"), (BODY, "request body timeout"), (LINGER, "linger")],
)
def test_expired_names_the_deadline(state: int, reason: str) -> None:
    async def body(conn: Conn, peer: socket.socket) -> None:
        conn.state, conn.deadline = state, 100.0
        assert conn.expired(99.0) == ""
        assert conn.expired(101.0) == reason

    with_conn(body)


def test_a_response_that_progresses_is_not_stalled() -> None:
    async def body(conn: Conn, peer: socket.socket) -> None:
        conn.responding()
        now = conn.loop.time()
        conn.sent += 1000
        assert conn.expired(now + 31) == ""  # progress: a fresh send period
        assert conn.expired(now + 50) == ""
        assert conn.expired(now + 62) == "send stalled for 30s"
        assert conn.state == BUSY

    with_conn(body)


def test_sweep_cancels_only_expired_connections() -> None:
    async def body(conn: Conn, peer: socket.socket) -> None:
        conn.task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        sweep([conn], conn.loop.time())
        assert not conn.task.cancelling() and conn.timed_out == ""
        sweep([conn], conn.deadline + 1)
        assert conn.task.cancelling() and conn.timed_out == "header timeout"
        with pytest.raises(asyncio.CancelledError):
            await conn.task

    with_conn(body)


def test_request_cap_closes_the_last_one() -> None:
    async def body(conn: Conn, peer: socket.socket) -> None:
        reqs = [Request() for _ in range(3)]
        for req in reqs:
            conn.count_request(req)
        assert [r.keep_alive for r in reqs] == [True, True, False]

    with_conn(body)


def test_take_turn_yields_once_a_connection_has_run_its_turn() -> None:
    """Turns are set by moving ``turn_start`` far (60 s) either way: no race with the clock."""

    async def body(conn: Conn, peer: socket.socket) -> None:
        ticks = 0

        async def other() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.get_running_loop().create_task(other())
        await asyncio.sleep(0)
        start = ticks
        conn.turn_start = conn.loop.time() + 60  # a fresh turn: no yield, no cost
        await conn.take_turn()
        assert ticks == start
        conn.turn_start -= 120  # this connection has run longer than its turn
        await conn.take_turn()
        assert ticks == start + 1
        assert conn.turn_start > conn.loop.time() - 60  # the yield started a new turn
        conn.turn_start -= 120
        peer.send(b"x")
        await conn.recv()  # data was waiting: no suspension, the turn is still used up
        await conn.take_turn()
        assert ticks == start + 2
        conn.turn_start -= 120
        used_up = conn.turn_start
        recv = asyncio.get_running_loop().create_task(conn.recv())
        await asyncio.sleep(0.01)  # recv waits for the network: that is a turn given
        peer.send(b"y")
        await recv
        assert conn.turn_start > used_up + 60 and TURN < 60
        task.cancel()

    with_conn(body)


def test_linger_sends_fin_and_drains_until_the_peer_closes() -> None:
    async def body(conn: Conn, peer: socket.socket) -> None:
        peer.send(b"GET /next HTTP/1.1\r\n")  # unread input: a plain close would reset
        lingering = asyncio.get_running_loop().create_task(conn.linger())
        await asyncio.sleep(0.01)
        assert conn.state == LINGER and peer.recv(10) == b""  # our FIN came first
        peer.send(b"more")
        await asyncio.sleep(0.01)
        assert not lingering.done()
        peer.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(lingering, 2)

    with_conn(body)


def test_linger_zero_closes_at_once() -> None:
    a, b = socket.socketpair()

    async def main() -> None:
        conn = Conn(a, "local", asyncio.get_running_loop(), Timeouts(linger=0))
        await conn.linger()
        assert conn.state == HEAD  # nothing done
        conn.close()

    asyncio.run(main())
    b.close()


def test_sweep_interval_follows_the_shortest_timeout() -> None:
    assert Timeouts().sweep_interval == 1.0
    assert Timeouts(header=1, body=1).sweep_interval == 0.5
    assert Timeouts(send=0.01).sweep_interval == 0.05


# --- the inline path (Conn.serve_now) ------------------------------------------------------

GET = b"GET /%s HTTP/1.1\r\nHost: h\r\n\r\n"


def inline(
    answer: Callable[[Conn, Request], bool | None],
    script: Callable[[Conn, socket.socket, asyncio.Task[bool]], Awaitable[None]],
) -> None:
    """The task waits in ``fill`` (as ``_exchange`` does) while ``answer`` runs inline."""

    async def body(conn: Conn, peer: socket.socket) -> None:
        conn.answer = answer
        conn.responding()
        conn.responded()  # a kept-alive connection between requests
        task = asyncio.get_running_loop().create_task(conn.fill())
        await asyncio.sleep(0)  # it waits: the reader is registered
        try:
            await script(conn, peer, task)
        finally:
            task.cancel()

    with_conn(body)


def target(req: Request) -> str:
    return req.target.decode()[1:]


async def settle() -> None:
    await asyncio.sleep(0.02)  # the loop runs the reader callback (and any task it woke)


def test_serve_now_answers_pipelined_requests_without_waking_the_task() -> None:
    seen: list[str] = []

    def answer(conn: Conn, req: Request) -> bool:
        seen.append(target(req))
        return True

    async def script(conn: Conn, peer: socket.socket, task: asyncio.Task[bool]) -> None:
        peer.send(GET % b"a" + GET % b"b")
        await settle()
        peer.send(GET % b"c")
        await settle()
        assert seen == ["a", "b", "c"] and not task.done()
        assert (conn.state, left(conn), conn.fed, conn.early) == (IDLE, 15, False, None)

    inline(answer, script)


def test_serve_now_hands_the_task_what_it_declines_in_order() -> None:
    def answer(conn: Conn, req: Request) -> bool:
        return target(req) == "a"  # b is not its kind: c must wait behind it

    async def script(conn: Conn, peer: socket.socket, task: asyncio.Task[bool]) -> None:
        peer.send(GET % b"a" + GET % b"b" + GET % b"c")
        assert await asyncio.wait_for(task, 2) is True  # fed already: fill does not feed again
        assert [target(r) for r in conn.reader.ready] == ["b", "c"] and not conn.fed

    inline(answer, script)


def test_serve_now_begun_response_is_in_flight_for_the_task() -> None:
    def answer(conn: Conn, req: Request) -> bool | None:
        conn.pending = "rest"
        return None  # the socket took part of it

    async def script(conn: Conn, peer: socket.socket, task: asyncio.Task[bool]) -> None:
        peer.send(GET % b"a" + GET % b"b")
        assert await asyncio.wait_for(task, 2) is True
        assert conn.state == BUSY  # a shutdown waits for it
        assert conn.pending == "rest" and [target(r) for r in conn.reader.ready] == ["b"]

    inline(answer, script)


def test_serve_now_gives_an_error_to_the_task() -> None:
    def answer(conn: Conn, req: Request) -> bool:
        raise ConnectionResetError("gone mid-body")

    async def script(conn: Conn, peer: socket.socket, task: asyncio.Task[bool]) -> None:
        peer.send(GET % b"a")
        with pytest.raises(ConnectionResetError, match="gone mid-body"):
            await asyncio.wait_for(task, 2)

    inline(answer, script)


def test_serve_now_leaves_eof_and_partial_heads_to_their_clocks() -> None:
    def answer(conn: Conn, req: Request) -> bool:
        raise AssertionError("no complete request was sent")

    async def script(conn: Conn, peer: socket.socket, task: asyncio.Task[bool]) -> None:
        peer.send(b"GET /a HTTP/1.1\r\nHo")
        await settle()
        assert not task.done() and (conn.state, left(conn)) == (HEAD, 10)  # the head clock
        peer.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(task, 2) is False  # EOF: the task closes

    inline(answer, script)


def test_serve_now_wakes_the_task_for_100_continue() -> None:
    def answer(conn: Conn, req: Request) -> bool:
        raise AssertionError("the body has not come")

    async def script(conn: Conn, peer: socket.socket, task: asyncio.Task[bool]) -> None:
        peer.send(b"PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n")
        peer.send(b"Expect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(task, 2) is True
        assert conn.reader.continue_due and conn.state == BODY

    inline(answer, script)


def test_serve_now_stops_after_its_turn() -> None:
    """A pipelined flood is answered inline for ``TURN`` s, then by the task (which yields)."""
    import time

    seen: list[str] = []

    def answer(conn: Conn, req: Request) -> bool:
        seen.append(target(req))
        time.sleep(TURN)  # each answer uses up a whole turn
        return True

    async def script(conn: Conn, peer: socket.socket, task: asyncio.Task[bool]) -> None:
        peer.send(b"".join(GET % n for n in (b"a", b"b", b"c")))
        assert await asyncio.wait_for(task, 2) is True
        assert seen == ["a"] and [target(r) for r in conn.reader.ready] == ["b", "c"]

    inline(answer, script)


def test_serve_now_never_reads_for_a_lingering_close() -> None:
    def answer(conn: Conn, req: Request) -> bool:
        raise AssertionError("lingering: input is drained, not answered")

    async def body(conn: Conn, peer: socket.socket) -> None:
        conn.answer = answer
        peer.send(GET % b"a")  # unread input
        lingering = asyncio.get_running_loop().create_task(conn.linger())
        await settle()
        peer.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(lingering, 2)

    with_conn(body)
