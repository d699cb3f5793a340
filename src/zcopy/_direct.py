"""The direct path: a copy that one kernel call finishes, with no job, no generator, no plan.

Taken only for endpoints whose exact type tells everything the planner would
find (no user wrappers, no TLS, no buffered writer to flush) and only while no
listener wants the plan's reason (``_stats.listeners``). It makes the one call
the planned route would make first, stores its result from C
(``box.extend(map(...))``, as the routes do), and when that call did not
finish the copy (EAGAIN, a refusal, a short count, an error) the full path
runs: from the start if nothing moved, else resumed with the bytes moved
(``Shot.hand_over``). What it skips is bookkeeping, never a check:
docs/design.md, "The direct path".
"""

from __future__ import annotations

import _socket
import io
import os
import socket
import stat
import weakref
from typing import Any

from . import _stats
from ._errors import with_count
from ._wrappers import Observed, Section

_RAW_TYPE: Any = _socket.socket.type
_STREAM = int(socket.SOCK_STREAM)
# File objects known to be over a regular file, with their fd: an open fd never changes
# what it is, so the fstat that said so need not run again while the object lives and keeps
# that fd. Weakly keyed: a dead object's entry goes with it, never to a new one at its address.
_REGULAR: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


class Shot:
    """One direct attempt: what the one call had to move, and what it did (``box``)."""

    __slots__ = ("box", "on_bytes", "owner", "route", "start", "want")

    def __init__(self) -> None:
        self.box: list[int] = []  # the call's result, stored from C
        self.want = -1  # what the call had to move to finish the copy; -1: no call made
        # Set just before the call: route, owner (a file object whose position must end
        # at start + moved), start, on_bytes (zcopy's own Observed on the sink).
        self.route: str
        self.owner: Any
        self.start: int
        self.on_bytes: Any

    def sendfile(self, dst: object, src: object, count: int | None, nonblocking: bool) -> bool:
        """File -> stream socket, one sendfile(2); False when the pair is not a direct one.

        A call that fails moves nothing (``want`` stays -1): the full path repeats it.
        """
        on_bytes = None
        if type(dst) is Observed:
            on_bytes, dst = dst.on_bytes, dst.target
        if type(dst) is not socket.socket or _RAW_TYPE.__get__(dst) & 0xF != _STREAM:
            return False
        if nonblocking and dst.gettimeout() != 0.0:
            return False  # acopy refuses a blocking socket: the full path says why
        offset = length = None
        owner: Any = None
        f: Any = src
        if type(src) is Section:
            offset, length, f = src.offset, src.length, src.target
            if type(f) is int:
                fd = f
            elif type(f) is io.FileIO and not f.closed:
                fd = f.fileno()
            else:
                return False
        elif type(f) is io.FileIO or (type(f) is io.BufferedReader and type(f.raw) is io.FileIO):
            if f.closed or not f.readable():
                return False
            fd, owner = f.fileno(), f
        else:
            return False
        size = None
        if type(f) is int or _REGULAR.get(f) != fd:
            try:
                st = os.fstat(fd)
            except OSError:
                return False  # a closed fd: the full path names it
            if not stat.S_ISREG(st.st_mode):
                return False
            if type(f) is not int:
                _REGULAR[f] = fd
            size = st.st_size
        start = offset if offset is not None else owner.tell()
        want = count if length is None else length if count is None else min(count, length)
        if want is None or (size is not None and size - start < want):
            # One call finishes a copy to EOF when it moves what the file holds.
            if size is None:
                try:
                    size = os.fstat(fd).st_size
                except OSError:
                    return False
            want = size - start
        if want <= 0:
            return False  # empty, or a /proc file whose size lies: the full path tells them apart
        self.on_bytes, self.owner, self.start, self.route = on_bytes, owner, start, "sendfile"
        try:
            self.box.extend(map(os.sendfile, (dst.fileno(),), (fd,), (start,), (want,)))
        except OSError:
            return True  # EAGAIN, a refusal, a reset: nothing moved, the full path decides
        self.want = want
        return True

    def write(self, dst: object, src: object, count: int | None) -> bool:
        """bytes -> BytesIO, one write; False when the pair is not a direct one."""
        if type(dst) is not io.BytesIO or type(src) is not bytes or not src or dst.closed:
            return False
        if count == 0:
            return False  # nothing to write: the full path makes no call at all
        data: Any = src if count is None or count >= len(src) else memoryview(src)[:count]
        self.route, self.owner, self.on_bytes = "write", None, None
        self.box.extend(map(dst.write, (data,)))
        self.want = len(data)
        return True

    @property
    def finished(self) -> bool:
        return bool(self.box) and self.box[0] == self.want

    def done(self) -> int:
        """Account for a call that finished the copy: position, stats, observer."""
        n = self.box[0]
        if self.owner is not None:
            self.owner.seek(self.start + n)
        _stats.record(self.route, n, 1)
        if self.on_bytes is not None:
            self.on_bytes(n)
        return n

    def hand_over(self, t: Any) -> None:
        """Give the bytes a short call moved to the full path's ``Transfer`` (which observes)."""
        if self.box:
            t.syscalls += 1
            t.advance(self.box.pop())

    def abort(self, exc: BaseException) -> None:
        """A signal handler raised before the full path took over: keep the count true."""
        n = self.box[0] if self.box else 0
        if n:
            if self.owner is not None:
                self.owner.seek(self.start + n)
            _stats.record(self.route, n, 1)
        with_count(exc, n)
