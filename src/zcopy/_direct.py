"""The direct path: a copy that one kernel call finishes, with no job, no generator, no plan.

Taken only for endpoints whose exact type tells everything the planner would
find (no user wrappers, no TLS, no buffered writer to flush) and only while no
listener wants the plan's reason (``_stats.listeners``). It makes the one call
the planned route would make first, stores its result from C
(``shot.extend(map(...))``, as the routes do), and when that call did not
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
from functools import partial
from itertools import starmap
from typing import Any

from . import _stats
from ._errors import with_count
from ._stats import FOLD_AT
from ._transfer import BIG
from ._wrappers import Observed, Section

_sock_type: Any = _socket.socket.type.__get__  # the C field: socket.type builds an enum
_STREAM = int(socket.SOCK_STREAM)
_SEEK_END = os.SEEK_END
# Module-level names: one lookup each on the direct path instead of two.
_Socket, _BytesIO = socket.socket, io.BytesIO
_FileIO, _BufferedReader = io.FileIO, io.BufferedReader
_sendfile = os.sendfile
_starmap = starmap
_ref = weakref.ref
_listeners = _stats.listeners  # changed in place only, never rebound
_SENDFILES, _WRITES = _stats.one_call["sendfile"], _stats.one_call["write"]
NOT_DIRECT = -1  # what ``Shot.attempt`` returns when the full path must run
# A finished direct copy logs itself for stats: ``_log_...(shot)``, one C call. abort()
# asks the log (``_stats.record_unless_logged``) whether the shot is there or was folded
# from it, so a raise just before the append counts the copy once and one just after does
# not count it again.
_log_sendfile: Any = _SENDFILES.append
_log_write: Any = _WRITES.append

# File objects (FileIO, BufferedReader over one) known to be readable and over a regular
# file: their fd, and the reference that removes the entry. An open fd never changes what
# it is, so the fstat that said so need not run again while the object lives and keeps
# that fd. Keyed by the object's plain weak reference: weakref.ref(f) hands back that same
# one on every call (no allocation, and the lookup matches by identity). The entry leaves
# with the object: the second reference's callback is ``_files.pop(key, <itself>)`` (a
# partial, so C: no signal handler or tracer runs inside it, and the default means it
# never raises). A dead key would never match (dead references compare by identity) but
# keeps the hash of its object's address, which the next file object mostly reuses: with
# a file opened per copy, a thousand such keys piled up in one probe chain and every
# lookup walked it (18 us of a 4 KiB copy: docs/benchmarks.md).
_files: dict[weakref.ref[Any], tuple[int, weakref.ref[Any]]] = {}
_UNKNOWN = (-1, None)


class Shot(list[int]):
    """One direct attempt. The list holds the call's result, stored from C.

    ``owner`` is a file object whose position must end at ``start`` + what moved;
    ``taker`` the full path's job once it has taken the count over (see ``copy()``).
    """

    __slots__ = ("owner", "route", "start", "taker")
    taker: Any  # a _copy.Job (which imports this module); unset until it takes over

    def attempt(self, dst: object, src: object, count: object, nonblocking: bool) -> int:
        """Make the one call if (dst, src) is a direct pair: bytes copied, or ``NOT_DIRECT``.

        ``NOT_DIRECT`` with a result in the list: a short call, to hand over. A call
        that fails moves nothing: the full path repeats it and says what went wrong.
        """
        # Every test on this path is by exact type, in the order the hot pairs meet them
        # (a socket sink, a file source); each costs tens of nanoseconds. ``owner`` is
        # unset until the position is the shot's to restore (abort() reads it with getattr).
        if _listeners or (count is not None and (type(count) is not int or count < 0)):
            return NOT_DIRECT  # a listener hears the plan's reason; odd counts are refused there
        sink: Any = dst
        on_bytes = None
        kind = type(sink)
        if kind is not _Socket:
            if kind is _BytesIO:
                return self._write(sink, src, count)
            if kind is not Observed:
                return NOT_DIRECT
            on_bytes, sink = sink.on_bytes, sink.target
            if type(sink) is not _Socket:
                return NOT_DIRECT
        if _sock_type(sink) & 0xF != _STREAM or (nonblocking and sink.gettimeout() != 0.0):
            return NOT_DIRECT  # acopy refuses a blocking socket: the full path says why
        f: Any = src
        kind = type(f)
        owner: Any = None
        want: int
        if kind is _BufferedReader or kind is _FileIO:
            owner = f
        elif kind is Section:
            start, want, f = f.offset, f.length, f.target
            if count is not None and (want is None or count < want):
                want = count
            if type(f) is int:
                # An fd number is no object to remember (a closed one's number is soon
                # reused): it is classified on every call.
                try:
                    if not stat.S_ISREG(os.fstat(f).st_mode):
                        return NOT_DIRECT
                except OSError:
                    return NOT_DIRECT
                fd = f
            elif type(f) is not _FileIO:
                return NOT_DIRECT
        else:
            return NOT_DIRECT
        if type(f) is not int:  # a file object (the source, or a section's): classified once
            try:
                fd = f.fileno()
            except ValueError:
                return NOT_DIRECT  # closed: the full path names it
            if _files.get(_ref(f), _UNKNOWN)[0] != fd and not _classify(f, fd):
                return NOT_DIRECT
        rewind = advance = False  # the position to put back on failure, to move on success
        if owner is not None:
            try:
                start = f.tell()
            except OSError:
                # Its fd was closed, or its number taken by a pipe or socket, behind the
                # object's back: the remembered verdict is void. The full path classifies
                # afresh and answers as it would for a new object.
                _files.pop(_ref(f), None)
                return NOT_DIRECT
            # From here on the position is the owner's to restore (see abort()).
            self.start = start
            self.owner = f
            if count is None:
                # The size, and the position a finished copy leaves: one lseek through the
                # object itself (a BufferedReader drops its read-ahead; its fd is never
                # moved behind its back). /proc files refuse SEEK_END: the full path.
                try:
                    want = f.seek(0, _SEEK_END) - start
                except OSError:
                    return NOT_DIRECT
                if want <= 0:  # empty, or a pseudo-file: the full path tells them apart
                    f.seek(start)
                    return NOT_DIRECT
                rewind = True
            elif count:
                want = count
                advance = True
            else:
                return NOT_DIRECT  # nothing to copy: the full path makes no call
        else:
            if want is None:  # a section to EOF: the size, without moving the file's position
                try:
                    want = os.fstat(fd).st_size - start
                except OSError:
                    return NOT_DIRECT
            if want <= 0:
                return NOT_DIRECT
        self.route = "sendfile"
        try:
            # The full path's first call asks for at most BIG (a huge count would not fit the
            # syscall's size_t): a copy beyond that is never finished by this call.
            ask = want if want <= BIG else BIG
            # starmap over one argument tuple: a quarter cheaper than map over four.
            self.extend(_starmap(_sendfile, ((sink.fileno(), fd, start, ask),)))
        except OSError:  # EAGAIN, a refusal, a reset: nothing moved, the full path decides
            if rewind:
                f.seek(start)
            return NOT_DIRECT
        if self[0] != want:  # short: the full path goes on from where the caller left the file
            if rewind:
                f.seek(start)
            return NOT_DIRECT
        if advance:
            f.seek(start + want)
        if on_bytes is not None:
            on_bytes(want)  # first: an observer that raises is then recorded once, by abort()
        # The position is final: the log must not keep the file object alive.
        self.owner = None
        _log_sendfile(self)  # stats without a lock (see _stats.one_call)
        if len(_SENDFILES) >= FOLD_AT:
            _stats.fold()
        return want

    def _write(self, dst: io.BytesIO, src: object, count: int | None) -> int:
        """bytes -> BytesIO: one write, which always takes everything."""
        if type(src) is not bytes or not src or count == 0:
            return NOT_DIRECT  # nothing to write: the full path makes no call at all
        data: Any = src if count is None or count >= len(src) else memoryview(src)[:count]
        self.route = "write"
        try:
            self.extend(map(dst.write, (data,)))
        except ValueError:
            return NOT_DIRECT  # closed: the full path names it
        n = self[0]
        _log_write(self)
        if len(_WRITES) >= FOLD_AT:
            _stats.fold()
        return n

    def hand_over(self, t: Any) -> None:
        """Give the bytes a short call moved to the full path's ``Transfer`` (which observes).

        Copied, not moved, from C: until the full path runs, ``abort()`` still counts them.
        """
        if self:
            t.syscalls += 1
            t.box.extend(self)
            t.settle()

    def abort(self, exc: BaseException) -> None:
        """A signal handler (or the full path's checks) raised before the full path ran."""
        n = self[0] if self else 0
        owner = getattr(self, "owner", None)  # None too when no attempt was made
        if owner is not None:
            owner.seek(self.start + n)  # also undoes the size probe's seek to EOF
        if n:
            _stats.record_unless_logged(self.route, self)
        with_count(exc, n)


def _classify(f: Any, fd: int) -> bool:
    """Whether a FileIO or BufferedReader over one is a readable regular file; remembered."""
    if type(f) is io.BufferedReader and type(f.raw) is not io.FileIO:
        return False
    try:
        if not (f.readable() and stat.S_ISREG(os.fstat(fd).st_mode)):
            return False
    except OSError:
        return False
    key = _ref(f)
    _files[key] = (fd, _ref(f, partial(_files.pop, key)))  # a replaced one dies uncalled
    return True
