"""acopy(): the same routes, driven by the asyncio loop instead of poll()."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ._copy import Job, wrap_up
from ._direct import Shot
from ._endpoint import blocking_reason, transport_of
from ._errors import FastPathLost, with_count
from ._transfer import Wait


def _check_nonblocking(obj: object, role: str) -> None:
    """Refuse, before a byte moves, an endpoint whose I/O could block the event loop.

    Judged by what the kernel sees (``O_NONBLOCK``, a socket's timeout), not by
    the Python type: a blocking socket behind ``makefile()`` or passed as a raw
    fd, a pipe opened with ``open()``. Regular files never wait in that sense.
    """
    why = blocking_reason(obj, role)
    if why is not None:
        raise ValueError(
            f"{why}: acopy() would block the event loop on it; make it non-blocking "
            f"(sock.setblocking(False), os.set_blocking(fd, False)) or use copy() in a thread"
        )


class Stepper:
    """Drive one copy job from the loop's fd callbacks: the one asyncio driver.

    The route generator runs inside the loop's reader/writer callback. The fd
    stays registered while the route keeps waiting on the same thing, so a busy
    copy costs no epoll_ctl, no Future and no task switch per EAGAIN. ``done``
    resolves to the bytes copied (or the error, with ``bytes_copied`` set).
    ``on_eof`` runs when the source is exhausted, before ``done`` resolves.
    """

    __slots__ = ("_under", "done", "job", "loop", "on_eof", "steps", "waiting")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        job: Job,
        on_eof: Callable[[], object] | None = None,
    ) -> None:
        self.loop = loop
        self.job = job
        self.on_eof = on_eof
        self.steps = job.steps()
        self.waiting: Wait | None = None
        self._under = False  # registered under a transport (see _register)
        self.done: asyncio.Future[int] = loop.create_future()

    def start(self) -> None:
        """Take the first step now: most small copies finish right here, without a wait."""
        self._step()

    def _step(self) -> None:
        # One try around all of it: whatever raises here (the route, the loop's registration,
        # a signal handler at any call) ends the copy through _fail, never leaves it hanging.
        try:
            if self.done.done():
                return
            try:
                wait = next(self.steps)
            except StopIteration:
                self._close()
                if self.on_eof is not None:
                    self.on_eof()
                # An observer may have cancelled the awaiting task during the last chunk.
                if not self.done.done():
                    self.done.set_result(self.job.t.moved)
                return
            if wait != self.waiting:
                self._unregister()
                self._register(wait)
        except BaseException as exc:
            try:
                self._fail(exc)
            except BaseException as late:  # a signal handler's raise while failing: again
                self._fail(late)

    def _fail(self, exc: BaseException) -> None:
        """End with ``exc``, counted; safe to repeat. Once ``done`` has a result, ``exc``
        goes to the loop, as any callback's error would."""
        self._close()
        if not isinstance(exc, FastPathLost):  # it carries its own count
            with_count(exc, self.job.t.moved)
        if not self.done.done():
            self.done.set_exception(exc)
            self.done.exception()  # marked retrieved: the awaiting side reports it
        elif not self.done.cancelled():  # a cancelled awaiter has its CancelledError, counted
            raise exc

    def _register(self, wait: Wait) -> None:
        # ``waiting`` is set before the loop is asked, so a raise right after a registration
        # still finds it to undo; undoing one that never happened is harmless.
        loop: Any = self.loop
        self._under = False
        self.waiting = wait
        try:
            if wait.write:
                loop.add_writer(wait.fd, self._step)
            else:
                loop.add_reader(wait.fd, self._step)
        except RuntimeError:
            # The fd is a transport's (a TransportSocket handed out by a server): the
            # public add_writer/add_reader refuse it, and asyncio's own loop.sendfile()
            # goes under them the same way, while the transport is not using that side
            # itself (resolve refused unsent bytes; a paused transport does not read).
            self._under = True  # first: the public remove_* would refuse this fd too
            transport = transport_of(wait.fd)
            if transport is None or not hasattr(loop, "_add_writer"):
                self.waiting = None
                raise
            if wait.write:
                loop._add_writer(wait.fd, self._step)
            elif not transport.is_reading():
                loop._add_reader(wait.fd, self._step)
            else:
                self.waiting = None
                raise

    def _unregister(self) -> None:
        w = self.waiting
        if w is not None:
            loop: Any = self.loop
            if self._under:
                (loop._remove_writer if w.write else loop._remove_reader)(w.fd)
            elif w.write:
                loop.remove_writer(w.fd)
            else:
                loop.remove_reader(w.fd)
            self.waiting = None

    def _close(self) -> None:
        # Every step repeats harmlessly, so a close that a raise cut short is done again whole.
        self._unregister()
        try:
            self.steps.close()  # a pipe still holding bytes is discarded, never reused
        finally:
            wrap_up(self.job)

    def cancel(self) -> None:
        """Stop now: nothing stays registered with the loop, no pipe or buffer stays held."""
        self._close()
        if not self.done.done():
            self.done.cancel()


async def acopy(
    dst: object,
    src: object,
    count: int | None = None,
    *,
    require_zero_copy: bool | None = None,
) -> int:
    """``copy()`` for asyncio: wait for sockets through the loop, never block it on them.

    Every endpoint with an fd that can make a caller wait (socket, pipe,
    terminal: also behind ``makefile()`` or as a raw fd) must be non-blocking,
    or ``ValueError`` is raised before a byte moves; regular files, buffers and
    fd-less objects are fine (an object's own methods are called on the loop).
    A TLS socket that wants to read to write (or the reverse) is waited on
    through the loop too. On cancellation no fd stays registered with
    the loop, the ``CancelledError`` carries ``bytes_copied`` (what dst
    received, which is also what the observers were told), and a file
    source's position advances by exactly that.

    >>> import asyncio, io, zcopy
    >>> asyncio.run(zcopy.acopy(io.BytesIO(), b"hello"))
    5
    """
    stepper: Stepper | None = None  # once built, cancel() undoes whatever it registered
    shot = Shot()
    try:
        n = shot.attempt(dst, src, count, True)
        if n >= 0:
            return n
        if shot:  # a short call: the sink is a non-blocking socket, the source a file
            job = Job(dst, src, count, require_zero_copy)
            shot.hand_over(job.t)
            shot.taker = job  # from here on the job owns the count and the positions
        else:
            _check_nonblocking(src, "src")
            _check_nonblocking(dst, "dst")
            shot.taker = Job(dst, src, count, require_zero_copy)
        # Only now: asking for the running loop costs a getpid() syscall, which a direct
        # copy skips.
        stepper = Stepper(asyncio.get_running_loop(), shot.taker)
        stepper.start()
        return await stepper.done
    except BaseException as exc:  # bad input, the copy's error, a cancellation, a raise
        try:
            _unwind(shot, stepper, exc)
        except BaseException as late:  # a signal handler's raise while unwinding: again
            _unwind(shot, stepper, late)
            raise
        raise


def _unwind(shot: Shot, stepper: Stepper | None, exc: BaseException) -> None:
    """Count ``exc`` and leave nothing registered, no position unset; safe to repeat."""
    taker: Job | None = getattr(shot, "taker", None)
    if taker is None:
        shot.abort(exc)
        return
    # Cancelled or interrupted while waiting: unregister, release, keep the count.
    # Before the stepper was built, nothing was registered: the job alone is wrapped up.
    if stepper is not None:
        stepper.cancel()
    else:
        wrap_up(taker)
    if not isinstance(exc, FastPathLost):  # it carries its own count
        with_count(exc, taker.t.moved)
