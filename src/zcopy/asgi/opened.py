"""The open files ``FileResponse`` keeps between requests: no open, fstat and close per request.

A request for a path still stats the *path* (one syscall, where a fresh open
cost four: open, fstat, the core's fstat of a new fd, close), and the kept fd
answers only while the path names the very inode it holds, with the same
mode: ``(st_dev, st_ino, st_mode)`` equal. So a file replaced by rename, a
symlink flipped, a directory or a FIFO swapped in, a file deleted or made
unreadable (chmod) is seen by the next request, which opens afresh (and is
refused as before), and the old fd is let go. A file changed in place
(truncated, grown, rewritten) is the same inode: the path's stat gives its new
size and mtime, hence a new validator, and the bytes come from that inode, so
a response never carries one file's bytes under another's validator. While the
fd is held the inode cannot be freed, so its number is not reused on its device.

Bounded: at most ``max_open`` fds (the least recently used idle one is closed
first; when every one is in use the new file is opened for its request only);
an fd unused for ``idle`` seconds is closed (a timer on the running event loop,
and at the next use); an fd a response is sending from is closed only after
the last response lets go. Out of fds (EMFILE, ENFILE): the idle ones are
closed and the open retried once. One cache per process (``FILES``), shared by
threads under a lock.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
import threading
import time
from collections import OrderedDict

from ..serve.files import Refused, open_under, refused_by

IDLE = 1.0  # seconds an unused fd stays open (the static server trusts a cached fd as long)
MAX_OPEN = 128  # fds kept open at most (busy responses may hold more, briefly)

Identity = tuple[int, int, int]  # st_dev, st_ino, st_mode


def identity(st: os.stat_result) -> Identity:
    """What must not change for a kept fd to answer for a path.

    >>> st = os.stat(__file__); identity(st) == (st.st_dev, st.st_ino, st.st_mode)
    True
    """
    return (st.st_dev, st.st_ino, st.st_mode)


class OpenFile:
    """A regular file kept open for the responses that send from it.

    ``file`` is the ``FileIO`` every response hands the server (the same
    object each time: the core classifies a file object once, not per send).
    """

    __slots__ = ("file", "ident", "kept", "path", "refs", "used")

    def __init__(self, path: str, file: io.FileIO, ident: Identity, now: float) -> None:
        self.path = path
        self.file = file
        self.ident = ident
        self.refs = 1  # the responses using it; the cache's hold is ``kept``
        self.kept = False
        self.used = now


class OpenFileCache:
    """Open regular files by absolute path, revalidated against the path's stat on every use.

    >>> import tempfile
    >>> cache = OpenFileCache()
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     a, _ = cache.acquire(f.name); cache.release(a)
    ...     b, st = cache.acquire(f.name); cache.release(b)
    ...     a is b, st.st_size, len(cache)
    (True, 0, 1)
    >>> cache.clear(); len(cache)
    0
    """

    def __init__(self, *, idle: float = IDLE, max_open: int = MAX_OPEN) -> None:
        self.idle = idle
        self.max_open = max_open
        self._map: OrderedDict[str, OpenFile] = OrderedDict()
        self._lock = threading.Lock()
        self._due = 0.0  # when the next use should look for idle fds
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._map)

    def acquire(self, path: str) -> tuple[OpenFile, os.stat_result]:
        """The open file at ``path`` (absolute) and its stat; ``release`` it. Raise ``Refused``.

        404 for a missing path or one that is not a regular file, 403 for an
        unreadable or special file, 503 when out of fds even after closing idle ones.
        """
        now = time.monotonic()
        if now >= self._due:
            self.close_idle(now)
        try:
            st = os.stat(path)
        except OSError as exc:
            self._drop(path)
            raise refused_by(exc) from None
        with self._lock:
            entry = self._map.get(path)
            if entry is not None:
                # ``closed``: a server that closes the file objects it is handed (the spec
                # does not say it may not) must not break the next request.
                if entry.ident == (st.st_dev, st.st_ino, st.st_mode) and not entry.file.closed:
                    entry.refs += 1
                    self._map.move_to_end(path)
                    return entry, st
                del self._map[path]  # replaced, flipped, chmod'ed: never answer with the old fd
                self._unkeep(entry)
        return self._open(path, now)

    def _open(self, path: str, now: float) -> tuple[OpenFile, os.stat_result]:
        try:
            fd, st = open_under("/", path, follow_symlinks=True, dotfiles=True)
        except Refused as refused:
            if refused.status != 503 or not self.close_idle(now, everything=True):
                raise
            fd, st = open_under("/", path, follow_symlinks=True, dotfiles=True)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise Refused(404, "not a regular file")
        try:
            entry = OpenFile(path, io.FileIO(fd, "rb"), identity(st), now)
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            if path not in self._map and self._make_room():
                entry.kept = True
                self._map[path] = entry
                self._arm()
        return entry, st

    def _make_room(self) -> bool:
        """Close least recently used idle fds until one more fits; False if all are busy."""
        if len(self._map) < self.max_open:
            return True
        for path, entry in self._map.items():
            if entry.refs == 0:
                del self._map[path]
                self._unkeep(entry)
                return True
        return False

    def release(self, entry: OpenFile) -> None:
        """A response is done with ``entry``; its fd closes if the cache no longer keeps it."""
        with self._lock:
            entry.refs -= 1
            entry.used = time.monotonic()
            if entry.refs == 0 and not entry.kept:
                entry.file.close()

    def close_idle(self, now: float | None = None, *, everything: bool = False) -> int:
        """Close the fds unused for ``idle`` seconds (``everything``: all unused); how many."""
        now = time.monotonic() if now is None else now
        closed = 0
        with self._lock:
            self._due = now + self.idle
            late = now - self.idle
            for path in [
                p for p, e in self._map.items() if not e.refs and (everything or e.used <= late)
            ]:
                self._unkeep(self._map.pop(path))
                closed += 1
        return closed

    def clear(self) -> None:
        """Let go of every fd (those in use close when their responses end)."""
        with self._lock:
            for entry in self._map.values():
                self._unkeep(entry)
            self._map.clear()

    def _drop(self, path: str) -> None:
        """The path is gone: let go of its fd now, not when it goes idle."""
        if path in self._map:
            with self._lock:
                entry = self._map.pop(path, None)
                if entry is not None:
                    self._unkeep(entry)

    @staticmethod
    def _unkeep(entry: OpenFile) -> None:
        entry.kept = False
        if entry.refs == 0:
            entry.file.close()

    def _arm(self, delay: float | None = None) -> None:
        """Make sure a timer on the running loop will close idle fds (called under the lock)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no asyncio loop (trio): idle fds are closed at the next use
        timer_loop = self._timer_loop
        if self._timer is not None and timer_loop is not None and not timer_loop.is_closed():
            return
        self._timer_loop = loop
        self._timer = loop.call_later(self.idle if delay is None else delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = time.monotonic()
        self.close_idle(now)
        with self._lock:
            if self._map:
                # When the first idle fd runs out its time; busy ones wait a full period.
                idle = [e.used for e in self._map.values() if not e.refs]
                soonest = min(idle) + self.idle - now if idle else self.idle
                self._arm(max(soonest, 0.01))


FILES = OpenFileCache()  # the process's: every FileResponse shares it


def _after_fork() -> None:
    FILES._lock = threading.Lock()  # a lock held by another thread at fork would never open
    FILES._timer = FILES._timer_loop = None
    # A response the parent had in flight does not go on in the child: its hold would pin
    # the entry for ever (never evicted, never closed after the file is replaced). The
    # child starts with an empty cache: its copies of idle fds close now, held ones when
    # their response lets go (if it does go on here) or with their file object.
    FILES.clear()  # under the lock just made: nothing else in the child holds it


os.register_at_fork(after_in_child=_after_fork)
