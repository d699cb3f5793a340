"""splice(2): socket or pipe to any fd, through a pooled pipe when neither end is one."""

from __future__ import annotations

import os
import select
from collections.abc import Generator

from .. import _pipes
from .._endpoint import Kind
from .._errors import NotHandled
from .._plan import Fallback
from .._transfer import REFUSED, Transfer, Wait, errname, write_all

_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if hasattr(os, "SPLICE_F_MOVE") else 0
_DIRECT_CAP = 1 << 20
# After this many bytes without a wait, wait once anyway: on an event loop a
# stream that never sees EAGAIN would otherwise starve every other copy.
_FAIR_SHARE = 8 << 20


def pump(t: Transfer) -> Generator[Wait, None, None]:
    if t.src.kind is Kind.PIPE or t.dst.kind is Kind.PIPE:
        yield from _direct(t)
    else:
        yield from _through_pipe(t)


def _refused(exc: OSError, side: str) -> NotHandled:
    return NotHandled(
        Fallback.SPLICE_REFUSED, f"the kernel refused splice {side} ({errname(exc)})"
    )


def _direct(t: Transfer) -> Generator[Wait, None, None]:
    src_fd, dst_fd = t.src.fd, t.dst.fd
    splice = t.kernel.splice
    box = t.box
    first = t.moved  # bytes moved before this route ran (a drained read-ahead)
    # SPLICE_F_NONBLOCK here would turn a blocking user's pipe non-blocking; only
    # the fds' own O_NONBLOCK decides, as for read()/write().
    flags = (os.SPLICE_F_MOVE,)
    nones = (None,)
    probe: select.poll | None = None
    while t.remaining != 0:
        t.syscalls += 1
        try:
            # Stored from C (see _transfer): a raising signal handler loses nothing.
            box.extend(map(splice, (src_fd,), (dst_fd,), (t.want(_DIRECT_CAP),), nones, nones,
                           flags))
        except BlockingIOError:
            # Either side may be the one that is not ready: ask which, once.
            if probe is None:
                probe = select.poll()
                probe.register(src_fd, select.POLLIN)
            ready = probe.poll(0)
            yield t.wait_dst() if ready else t.wait_src()
            continue
        except OSError as exc:
            if t.moved == first and exc.errno in REFUSED:
                raise _refused(exc, "between them") from exc
            raise
        if t.settle() == 0:
            return


def _through_pipe(t: Transfer) -> Generator[Wait, None, None]:
    src_fd, dst_fd = t.src.fd, t.dst.fd
    splice = t.kernel.splice
    box = t.box
    first = t.moved
    flags = (_FLAGS,)
    nones = (None,)
    # The pipe is held only while bytes are in flight: an idle connection (a
    # proxy may have thousands) waits on its source with no pipe, so the
    # per-user pipe budget pays only for copies that are moving bytes.
    pipe: _pipes.Pipe | None = None
    held = 0  # bytes taken from src and sitting in the pipe
    streak = 0  # bytes moved since the last wait
    try:
        while True:
            if held == 0:
                if t.remaining == 0:
                    return
                if streak >= _FAIR_SHARE:
                    streak = 0
                    if pipe is not None:
                        spare, pipe = pipe, None  # forgotten first: see below
                        _pipes.release(spare)
                    yield t.wait_src()  # most likely ready at once, after the others' turn
                    continue
                if pipe is None:
                    pipe = _pipes.acquire()
                t.syscalls += 1
                try:
                    # Not stored from C: bytes in the pipe are not delivered yet, and
                    # on any exit the pipe is released only if the kernel says it is empty.
                    held = splice(src_fd, pipe.w, t.want(pipe.size), flags=_FLAGS)
                except BlockingIOError:
                    # Empty: back to the pool while src is quiet. Forgotten before it is
                    # released: a raise right after release() must not let the finally
                    # below release it a second time (pooled twice, one pipe would serve
                    # two copies at once, and mix their bytes).
                    spare, pipe = pipe, None
                    _pipes.release(spare)
                    streak = 0
                    yield t.wait_src()
                    continue
                except OSError as exc:
                    if t.moved == first and exc.errno in REFUSED:
                        raise _refused(exc, "from src") from exc
                    raise
                if held == 0:
                    return  # EOF
            assert pipe is not None
            t.syscalls += 1
            try:
                # Backpressure: while dst is full the bytes wait in the kernel's
                # pipe and src is not read; nothing is ever buffered in Python.
                box.extend(map(splice, (pipe.r,), (dst_fd,), (held,), nones, nones, flags))
            except BlockingIOError:
                streak = 0
                yield t.wait_dst()
                continue
            except OSError as exc:
                if t.moved == first and exc.errno in REFUSED:
                    # dst refused on its first call, after src gave up bytes:
                    # they go out by write(), then the next route takes over.
                    yield from _salvage(t, pipe)
                    held = 0
                    raise _refused(exc, "to dst") from exc
                raise
            n = t.settle()
            held -= n
            streak += n
    finally:
        if pipe is not None:
            _pipes.release(pipe)  # closed instead if the kernel still counts bytes in it


def _salvage(t: Transfer, pipe: _pipes.Pipe) -> Generator[Wait, None, None]:
    """Deliver by write() what the pipe holds (the kernel's count, not ours)."""
    data = bytearray()
    while unread := _pipes.unread(pipe):
        data += os.read(pipe.r, unread)
    yield from write_all(t, memoryview(data))
