"""copy(): resolve both ends, choose a route, run it; fall back only before the first byte."""

from __future__ import annotations

import os
import select
import warnings
from collections.abc import Generator
from typing import Any

from . import _stats
from ._direct import Shot
from ._endpoint import Endpoint, Kind, resolve_pair
from ._errors import FastPathLost, FastPathWarning, NotHandled, with_count
from ._plan import Fallback, Plan, Route, choose
from ._routes import copy_file_range, sendfile, splice, userspace, write
from ._transfer import Transfer, Wait, write_all

_PUMPS = {
    Route.SENDFILE: sendfile.pump,
    Route.SPLICE: splice.pump,
    Route.COPY_FILE_RANGE: copy_file_range.pump,
    Route.WRITE: write.pump,
    Route.USERSPACE: userspace.pump,
}

STRICT_ENV = "ZCOPY_REQUIRE_ZERO_COPY"

# A first call that moved nothing: an empty file, or a pseudo-file whose size lies.
_FIRST_CALL_ZERO = frozenset({Fallback.COPY_FILE_RANGE_ZERO, Fallback.SENDFILE_ZERO_SIZE})


def check_count(count: object) -> int | None:
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"count must be an int or None, not {type(count).__name__}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return count


def strict_default(require_zero_copy: bool | None) -> bool:
    if require_zero_copy is not None:
        return require_zero_copy
    return os.environ.get(STRICT_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def explain(dst: object, src: object, count: int | None = None) -> Plan:
    """Say which route ``copy(dst, src, count)`` will take and why, without moving a byte.

    >>> import io, zcopy
    >>> class JustReader:
    ...     def __init__(self, f): self.f = f
    ...     def read(self, n=-1): return self.f.read(n)
    >>> plan = zcopy.explain(io.BytesIO(), JustReader(io.BytesIO(b"x")))
    >>> plan.route.value, plan.zero_copy
    ('userspace', False)
    """
    check_count(count)
    return choose(*resolve_pair(src, dst))


class Job:
    """One copy from start to finish: everything copy() and acopy() share.

    ``kernel`` and ``bufsize`` are passed on to the ``Transfer`` (see there).
    """

    __slots__ = ("finished", "plan", "ran", "recorded", "site", "strict", "t", "why")

    def __init__(
        self,
        dst: object,
        src: object,
        count: object,
        require_zero_copy: bool | None,
        *,
        kernel: Any = os,
        bufsize: int | None = None,
    ):
        count = check_count(count)
        src_ep, dst_ep = resolve_pair(src, dst)
        self.plan = choose(src_ep, dst_ep)
        self.ran = self.plan.route
        self.why: str | None = None  # the fallback's reason, once one happened
        self.finished = False  # the positions are set (see finish())
        self.recorded = False  # counted in stats() (see account())
        # Where the copy was asked for, for listeners (pytest plugin); free without one.
        self.site = _stats.call_site() if _stats.listeners else ""
        self.strict = strict_default(require_zero_copy)
        if self.strict and not self.plan.zero_copy:
            raise FastPathLost(str(self.plan))
        remaining = count
        if src_ep.limit is not None:
            remaining = src_ep.limit if remaining is None else min(remaining, src_ep.limit)
        if dst_ep.limit is not None:
            remaining = dst_ep.limit if remaining is None else min(remaining, dst_ep.limit)
        self.t = Transfer(src_ep, dst_ep, remaining, _start_offset(src_ep), kernel, bufsize)
        if dst_ep.flush_first is not None:
            dst_ep.flush_first.flush()
        if src_ep.flush_first is not None:
            src_ep.flush_first.flush()

    def steps(self) -> Generator[Wait, None, None]:
        """Walk the plan's routes: the first, then the next each time the kernel refuses one."""
        t = self.t
        plan = self.plan
        if plan.fallback_code is not None:
            self._fell_back(plan.fallback_code, str(plan))
        try:
            if t.src.readahead is not None and t.remaining != 0:
                yield from _drain_readahead(t)
            for route in plan.routes:
                self.ran = route
                try:
                    yield from _PUMPS[route](t)
                    return
                except NotHandled as refusal:
                    if refusal.code in _FIRST_CALL_ZERO and _confirm_empty(t):
                        return  # an honest empty file: nothing to copy, nothing lost
                    # The plan ends with user space, which never refuses.
                    then = plan.routes[plan.routes.index(route) + 1]
                    reason = f"{then.label}: {refusal.reason}"
                    if self.strict and not then.zero_copy:
                        raise with_count(FastPathLost(reason), t.moved) from refusal
                    self._fell_back(refusal.code, reason, warn=not then.zero_copy)
        finally:
            # On every exit: the count and the stats are settled here, and again by
            # wrap_up() if a raise cut this short (each is done once).
            self.account()

    def account(self) -> None:
        """Settle a stored result (a handler may have raised right after the syscall) and
        count the copy under the route that ran: one cut short by an error or a
        cancellation still moved its bytes."""
        t = self.t
        if t.box:
            t.settle()
        if not self.recorded:
            _stats.record_once(self, self.ran.value, t.moved, t.syscalls)
            if _stats.listeners:
                _stats.notify(self.ran.value, t.moved, self.why or str(self.plan), self.site)

    def _fell_back(self, code: Fallback, reason: str, warn: bool = True) -> None:
        _stats.record_fallback(code, reason)
        self.why = reason
        if warn:
            _warn(reason)

    def finish(self) -> None:
        """Move the file positions the way a read()/write() loop would have."""
        t = self.t
        owner = t.src.position_owner
        if owner is not None:
            end = t.start + t.moved
            if isinstance(owner, int):
                os.lseek(owner, end, os.SEEK_SET)
            else:
                owner.seek(end)
        dst_owner = t.dst.position_owner
        if dst_owner is not None and not isinstance(dst_owner, int):
            dst_owner.seek(0, os.SEEK_CUR)  # resync a buffered writer with its fd
        if t.src.buffer is not None:
            # A BytesIO stays resizable afterwards. The view is only ever sliced, and a
            # slice (even one a traceback or a sink still holds) never blocks its release.
            t.src.buffer.release()
        self.finished = True  # last: a finish cut short by a raise is done again, whole


def _start_offset(ep: Endpoint) -> int | None:
    if ep.kind is Kind.FILE:
        if ep.offset is not None:
            return ep.offset
        owner = ep.position_owner
        start = os.lseek(owner, 0, os.SEEK_CUR) if isinstance(owner, int) else owner.tell()
        return int(start)
    if ep.kind is Kind.BUFFER:
        base = ep.offset or 0
        owner = ep.position_owner
        return base + int(owner.tell()) if owner is not None else base
    return None


def _drain_readahead(t: Transfer) -> Generator[Wait, None, None]:
    """A buffered non-seekable reader may hold bytes already read from its fd: they go first.

    ``read1(n)`` returns only buffered bytes when any are buffered, else makes
    one raw read. Asking for the whole buffer size therefore drains the
    read-ahead in one call; looping would keep copying the stream in user space.
    """
    reader: Any = t.src.readahead
    data = reader.read1(t.want(_buffer_size(reader)))
    if data:
        yield from write_all(t, memoryview(data))


def _buffer_size(reader: Any) -> int:
    # CPython's Buffered* objects report their buffer in __sizeof__ and nowhere else.
    size = int(reader.__sizeof__()) - type(reader).__basicsize__
    return size if size > 0 else 1 << 20


def _confirm_empty(t: Transfer) -> bool:
    """Tell an empty file from a size-0 pseudo-file without consuming."""
    assert t.offset is not None
    try:
        return len(os.pread(t.src.fd, 1, t.offset)) == 0
    except OSError:  # a pseudo-file that cannot pread: let user space read it
        return False


def _warn(reason: str) -> None:
    # _warn, _fell_back, Job.steps, run, copy: the caller of copy() is six frames up.
    warnings.warn(reason, FastPathWarning, stacklevel=6)


class _Poller:
    """One poll object per copy, re-registered only when the fd or the event changes."""

    __slots__ = ("_poll", "_watching")

    def __init__(self) -> None:
        self._poll = select.poll()
        self._watching: tuple[int, int] | None = None

    def wait(self, w: Wait) -> None:
        want = (w.fd, select.POLLOUT if w.write else select.POLLIN)
        if want != self._watching:
            if self._watching is not None:
                self._poll.unregister(self._watching[0])
            self._poll.register(*want)
            self._watching = want
        ms = None if w.timeout is None else max(0, int(w.timeout * 1000))
        if not self._poll.poll(ms):
            raise TimeoutError(f"timed out after {w.timeout}s waiting for {w.what}")


def copy(
    dst: object,
    src: object,
    count: int | None = None,
    *,
    require_zero_copy: bool | None = None,
    buffer_size: int | None = None,
) -> int:
    """Copy from src to dst until src's EOF, or ``count`` bytes; return the bytes copied.

    The cheapest kernel route runs (see ``explain()``); user space only when
    it must. With ``require_zero_copy=True`` (or ``ZCOPY_REQUIRE_ZERO_COPY=1``
    in the environment) a copy that would fall back raises ``FastPathLost``
    before moving a byte. Every exception out of ``copy()`` carries
    ``exc.bytes_copied``: what dst received, also when a signal handler
    raises mid-copy (``docs/design.md``, Guarantees). A file source's
    position advances by exactly the bytes copied; a ``section`` leaves it
    alone. ``buffer_size`` sizes the buffer of the user-space route, if it
    runs (default 1 MiB), as ``shutil.copyfileobj``'s ``length`` does.

    Bad input is refused before a byte moves: a text-mode file (``TypeError``),
    a closed file, socket or fd (``ValueError``), a negative count
    (``ValueError``) or one that is not an int (``TypeError``), a write-only
    source or read-only sink (``io.UnsupportedOperation``). A count beyond EOF
    copies what exists and returns it. A socket's timeout bounds each wait for
    it (``TimeoutError``), as ``socket.sendfile`` does: it is a stall timeout,
    not a deadline for the whole copy (a slow but moving peer never trips it).
    A non-blocking socket is waited on without a limit. EINTR is retried. A
    peer that goes away mid-copy raises ``BrokenPipeError`` or
    ``ConnectionResetError``. Files in ``/proc`` and ``/sys`` (size 0, yet
    content) have their content copied; a file that shrinks while it is sent
    stops the copy at its new end (never padded). An ``O_APPEND`` file sink
    takes the user-space route, since the kernel's routes refuse it (on a pipe
    O_APPEND means nothing, and splice stays). ``copy(f, f)`` through one
    position raises ``ValueError``. A TLS socket, or a file object over one,
    is written and read through its own methods, never its fd; a count an
    object returns that cannot be true raises ``TypeError``/``ValueError``.

    >>> import io, zcopy
    >>> out = io.BytesIO()
    >>> zcopy.copy(out, io.BytesIO(b"hello world"), 5), out.getvalue()
    (5, b'hello')
    """
    shot = Shot()
    try:
        if buffer_size is None:
            n = shot.attempt(dst, src, count, False)
            if n >= 0:
                return n
        bufsize = None if buffer_size is None else _check_size(buffer_size)
        job = Job(dst, src, count, require_zero_copy, bufsize=bufsize)
        shot.hand_over(job.t)  # the bytes a short direct call moved, if any
        shot.taker = job  # from here on the job, not the shot, owns the count and the positions
        return run(job)
    except BaseException as exc:  # bad input, the copy's error, or a signal handler's raise
        try:
            _unwind(shot, exc)
        except BaseException as late:  # a signal handler's raise while unwinding: again
            _unwind(shot, late)
            raise
        raise


def _unwind(shot: Shot, exc: BaseException) -> None:
    """Count ``exc`` and leave the positions and stats right; safe to repeat."""
    taker: Job | None = getattr(shot, "taker", None)
    if taker is None:
        shot.abort(exc)
        return
    wrap_up(taker)  # done already, unless a raise cut it short
    if not isinstance(exc, FastPathLost):  # it carries its own count
        with_count(exc, taker.t.moved)


def run(job: Job) -> int:
    """Drive a job to its end with poll(); the blocking half of ``copy()``."""
    steps = job.steps()
    poller: _Poller | None = None  # built on the first EAGAIN: most copies never wait
    try:
        try:
            for wait in steps:
                if poller is None:
                    poller = _Poller()
                poller.wait(wait)
        finally:
            try:
                steps.close()  # a finished walk: no-op
            finally:
                wrap_up(job)
    except BaseException as exc:
        if not isinstance(exc, FastPathLost):  # it carries its own count
            with_count(exc, job.t.moved)
        raise
    return job.t.moved


def wrap_up(job: Job) -> None:
    """Settle the count, count the copy in the stats and set the positions: each once,
    whatever raised on the way.

    A signal handler may raise even after the kernel's last call: in the walk's
    bookkeeping, or on entering this function. Whoever handles the raise
    calls this again; what is already done is not done twice.
    """
    job.account()
    if not job.finished:
        job.finish()


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"buffer_size must be an int or None, not {type(size).__name__}")
    if size <= 0:
        raise ValueError(f"buffer_size must be > 0, got {size}")
    return size
