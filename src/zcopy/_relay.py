"""relay(): two connected sockets, both directions at once, by the same routes as acopy().

Each direction is one copy job (splice through a pooled pipe, or the user-space
route when splice is turned off), driven on the asyncio loop. EOF one way is
passed on as ``shutdown(SHUT_WR)`` while the other way keeps flowing; an error
either way tears both down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
from collections.abc import Callable

from . import _stats
from ._aio import Stepper, _check_nonblocking
from ._copy import Job, explain
from ._errors import FastPathLost
from ._plan import Fallback, Plan, Route
from ._wrappers import observe

NO_SPLICE = Fallback.NO_SPLICE
_NO_SPLICE_WHY = "splice turned off by the caller (relay(splice=False), zcopy proxy --no-splice)"

# SO_LINGER {on, 0 s}: close() then sends RST instead of FIN, so a reset on one
# side reaches the peer on the other side as a reset, not as a clean EOF.
_ABORT = struct.pack("ii", 1, 0)


def relay_plan(dst: socket.socket, src: socket.socket, *, splice: bool = True) -> Plan:
    """The route ``relay()`` takes from src to dst, and why (``explain()`` for a relay).

    >>> import socket, zcopy
    >>> from zcopy import relay_plan
    >>> a, b = socket.socketpair()
    >>> relay_plan(a, b).route.value, relay_plan(a, b, splice=False).route.value
    ('splice', 'userspace')
    >>> a.close(); b.close()
    """
    plan = explain(dst, src)
    if splice or plan.route is Route.USERSPACE:
        return plan
    return Plan(Route.USERSPACE, _NO_SPLICE_WHY, (Route.USERSPACE,), plan.src, plan.dst, NO_SPLICE)


def _turn_off_splice(job: Job, dst: socket.socket, src: socket.socket) -> None:
    plan = relay_plan(dst, src, splice=False)
    if job.strict:
        raise FastPathLost(str(plan))
    # Counted like any fallback, but not warned about: the caller asked for it.
    _stats.record_fallback(NO_SPLICE, str(plan))
    job.plan = dataclasses.replace(plan, fallback_code=None)


def _direction(
    loop: asyncio.AbstractEventLoop,
    dst: socket.socket,
    src: socket.socket,
    splice: bool,
    on_bytes: Callable[[int], object],
    ways: list[Stepper],
) -> None:
    """One way of a relay: the same job and driver as ``acopy()``; only the route may differ.

    The driver joins ``ways`` before it starts, so whatever raises from here on (a signal
    handler's raise included) finds it there to cancel.
    """
    job = Job(dst, observe(src, on_bytes), None, None)
    if not splice and job.plan.route is not Route.USERSPACE:
        _turn_off_splice(job, dst, src)  # stats say why

    def half_close() -> None:
        # EOF from src: pass it on; the other direction keeps flowing.
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    stepper = Stepper(loop, job, on_eof=half_close)
    ways.append(stepper)
    stepper.start()


def _abort(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)


async def relay(
    a: socket.socket,
    b: socket.socket,
    *,
    splice: bool = True,
    idle_timeout: float | None = None,
    on_bytes: Callable[[int, int], object] | None = None,
) -> tuple[int, int]:
    """Relay bytes between two connected non-blocking sockets until both directions end.

    Returns ``(a_to_b, b_to_a)`` byte counts. EOF from one side becomes
    ``shutdown(SHUT_WR)`` toward the other, which keeps sending until its own
    EOF. An error either way (a reset, a broken pipe) cancels the other way,
    arms both sockets to reset their peers when closed (``SO_LINGER`` 0), and
    propagates with ``exc.bytes_relayed = (a_to_b, b_to_a)`` (every exception
    out of relay() carries it, also a signal handler's raise); the caller
    closes the sockets. ``idle_timeout``: stop both ways and raise
    ``TimeoutError`` after that many seconds with no byte either way (the
    sockets then close with a FIN, not a reset). ``on_bytes(i, n)``
    hears of every chunk (``i`` 0 for a->b, 1 for b->a). ``splice=False``
    takes the user-space route (one reused buffer per direction), visible in
    ``zcopy.stats()`` as the fallback code ``"no-splice"`` (``relay_plan()`` says
    which route and why before a byte moves; strict mode refuses it with
    ``FastPathLost``). Cancelling the
    relay cancels both directions; no pipe or loop registration outlives it.

    >>> import asyncio, socket, zcopy
    >>> a, x = socket.socketpair(); b, y = socket.socketpair()
    >>> for s in (a, b): s.setblocking(False)
    >>> x.sendall(b"ping"); x.shutdown(socket.SHUT_WR); y.shutdown(socket.SHUT_WR)
    >>> asyncio.run(zcopy.relay(a, b))
    (4, 0)
    >>> for s in (a, b, x, y): s.close()
    """
    # Nothing is called before the try: every exception out of relay() says what moved.
    ways: list[Stepper] = []
    idle = False
    failed: BaseException | None = None
    timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    last: list[float]

    def seen(i: int) -> Callable[[int], None]:
        def on_chunk(n: int) -> None:
            last[0] = loop.time()
            if on_bytes is not None:
                on_bytes(i, n)

        return on_chunk

    def check_idle() -> None:
        nonlocal timer, idle
        assert idle_timeout is not None
        quiet = loop.time() - last[0]
        if quiet >= idle_timeout:
            idle = True
            for w in ways:
                w.cancel()
        else:
            timer = loop.call_later(idle_timeout - quiet, check_idle)

    try:
        _check_nonblocking(a, "a")
        _check_nonblocking(b, "b")
        loop = asyncio.get_running_loop()
        last = [loop.time()]
        _direction(loop, b, a, splice, seen(0), ways)
        _direction(loop, a, b, splice, seen(1), ways)
        if idle_timeout is not None:
            timer = loop.call_later(idle_timeout, check_idle)
        futures = tuple(w.done for w in ways)
        await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((f.exception() for f in futures if f.done() and not f.cancelled()
                       and f.exception() is not None), None)
        if failed is not None:
            raise failed
        if idle:
            raise TimeoutError(f"relay idle: no byte either way for {idle_timeout}s")
        return futures[0].result(), futures[1].result()
    except BaseException as exc:
        try:
            _unwind(ways, exc, failed is not None, a, b)
        except BaseException as late:  # a signal handler's raise while unwinding: again
            _unwind(ways, late, failed is not None, a, b)
            raise
        raise
    finally:
        if timer is not None:
            timer.cancel()


def _unwind(
    ways: list[Stepper], exc: BaseException, failed: bool, a: socket.socket, b: socket.socket
) -> None:
    """Stop both ways and say what each delivered; safe to repeat."""
    # Never leave a direction running (or a pipe held) behind the caller's back.
    for w in ways:
        w.cancel()
    if failed:
        _abort(a, b)  # an idle timeout or a cancel closes politely; an error resets
    # What each way's dst received, from its job: settled by cancel(), whatever an observer
    # heard or missed.
    moved = [w.job.t.moved for w in ways] + [0, 0]
    with contextlib.suppress(AttributeError):
        exc.bytes_relayed = (moved[0], moved[1])  # type: ignore[attr-defined]
