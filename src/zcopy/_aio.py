"""acopy(): the same routes, driven by the asyncio loop instead of poll()."""

from __future__ import annotations

import asyncio
import socket

from ._copy import Job
from ._errors import FastPathLost, with_count
from ._transfer import Wait


def _check_nonblocking(obj: object, role: str) -> None:
    if isinstance(obj, socket.socket) and obj.gettimeout() != 0.0:
        raise ValueError(
            f"{role} socket must be non-blocking for acopy (call sock.setblocking(False))"
        )


async def _wait(loop: asyncio.AbstractEventLoop, w: Wait) -> None:
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    if w.write:
        loop.add_writer(w.fd, ready)
    else:
        loop.add_reader(w.fd, ready)
    try:
        await fut
    finally:
        # Cancelled or not, nothing stays registered on the loop.
        if w.write:
            loop.remove_writer(w.fd)
        else:
            loop.remove_reader(w.fd)


async def acopy(
    dst: object,
    src: object,
    count: int | None = None,
    *,
    require_zero_copy: bool | None = None,
) -> int:
    """``copy()`` for asyncio: wait for sockets through the loop, never block it on them.

    Sockets must be non-blocking. On cancellation no fd stays registered with
    the loop, the ``CancelledError`` carries ``bytes_copied`` (what dst
    received, which is also what the observers were told), and a file
    source's position advances by exactly that.

    >>> import asyncio, io, zcopy
    >>> asyncio.run(zcopy.acopy(io.BytesIO(), b"hello"))
    5
    """
    _check_nonblocking(src, "src")
    _check_nonblocking(dst, "dst")
    loop = asyncio.get_running_loop()
    job = Job(dst, src, count, require_zero_copy)
    steps = job.steps()
    try:
        for wait in steps:
            await _wait(loop, wait)
    except BaseException as exc:
        steps.close()
        job.finish()
        if not isinstance(exc, FastPathLost):
            with_count(exc, job.t.moved)
        raise
    job.finish()
    return job.t.moved
