"""Opening what a request names, safely, and remembering what each file's head looks like.

``open_under`` opens with ``O_NONBLOCK`` (a FIFO in the tree must not hang
the server) and, unless symlinks may be followed, asks the kernel where the
opened fd really is (``/proc/self/fd``): that check cannot be raced by
swapping a symlink between a check and the open. The same fd-based answer
hides dotfiles by their resolved name (a symlink ``envlink -> .env`` is as
hidden as ``.env``), and ``list_dir`` lists a checked directory *fd*, never a
name that could have been swapped since. Running out of fds or memory is a
``503`` with ``Retry-After``, never a (cacheable) ``404``. ``MetaCache`` keeps a
file's header bytes, validators and sidecar list for up to a second, keyed by
the fd's identity (device, inode, size, mtime), so a changed file is never
described by stale headers.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from dataclasses import dataclass

from zcopy import Section

from . import headers, listing
from .conditional import Validators
from .paths import within_root

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY

# coding -> sidecar suffix, in the order the server prefers them.
SIDECARS = (("br", ".br"), ("gzip", ".gz"))
CODINGS = tuple(c for c, _ in SIDECARS)
_SUFFIX = dict(SIDECARS)

META_TTL = 1.0  # seconds a cached description (and sidecar list) is trusted

# The process or the system ran out of something: the file exists, try again soon.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})
RETRY_AFTER = b"Retry-After: 1\r\n"


class Refused(Exception):
    """The path cannot be served; ``status`` says how to answer (403, 404 or 503).

    ``fields`` are extra header lines for the answer (``Retry-After`` on 503).

    >>> Refused(404, "no such file").status, refused_by(OSError(24, "Too many open files")).fields
    (404, b'Retry-After: 1\\r\\n')
    """

    def __init__(self, status: int, reason: str, fields: bytes = b"") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.fields = fields


def refused_by(exc: OSError) -> Refused:
    """How to answer when opening or reading a path failed with ``exc``.

    >>> refused_by(FileNotFoundError(2, "x")).status, refused_by(PermissionError(13, "x")).status
    (404, 403)
    >>> refused_by(OSError(23, "Too many open files in system")).status
    503
    """
    if exc.errno in _EXHAUSTED:
        return Refused(503, f"out of resources ({exc.strerror})", RETRY_AFTER)
    if isinstance(exc, PermissionError):
        return Refused(403, "permission denied")
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return Refused(404, "no such file")
    return Refused(404, f"cannot open ({exc.strerror})")


def _real_path(fd: int, path: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc: fall back to resolving the name (racy, but still checked)
        return os.path.realpath(path)


def hidden(root: str, real: str) -> bool:
    """Whether the resolved path names a dotfile (any component under ``root``).

    Outside the root (``--follow-symlinks``) only the file's own name counts.

    >>> hidden("/srv", "/srv/a/.env"), hidden("/srv", "/srv/.git/x"), hidden("/srv", "/srv/a")
    (True, True, False)
    >>> hidden("/home/u/.site", "/home/u/.site/a"), hidden("/srv", "/etc/.hide")
    (False, True)
    """
    if within_root(root, real):
        rel = real[len(root) :]
        return "/." in rel if rel.startswith("/") else rel.startswith(".") or "/." in rel
    return os.path.basename(real).startswith(".")


def open_under(
    root: str,
    path: str,
    follow_symlinks: bool,
    *,
    dotfiles: bool = False,
    dir_fd: int | None = None,
) -> tuple[int, os.stat_result]:
    """Open ``path`` (under ``root``) read-only; return (fd, fstat). Raise ``Refused``.

    With ``dir_fd``, ``path`` is a name in that (already checked) directory.
    The checks run on the opened fd: where it really is (unless symlinks may
    be followed), whether its resolved name is a dotfile (unless they are
    shown), and that it is a regular file or a directory.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     os.symlink("/etc/hostname", os.path.join(d, "out"))
    ...     try:
    ...         open_under(os.path.realpath(d), os.path.join(d, "out"), False)
    ...     except Refused as e:
    ...         print(e.status)
    404
    """
    try:
        fd = os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise refused_by(exc) from None
    try:
        st = os.fstat(fd)
        if not (follow_symlinks and dotfiles):
            real = _real_path(fd, path)
            if not follow_symlinks and not within_root(root, real):
                raise Refused(404, "resolves outside the served directory")
            if not dotfiles and hidden(root, real):
                raise Refused(404, "resolves to a dotfile")
        mode = st.st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise Refused(403, "not a regular file")
    except OSError as exc:
        os.close(fd)
        raise refused_by(exc) from None
    except BaseException:
        os.close(fd)
        raise
    return fd, st


@dataclass(slots=True)
class Meta:
    """What a response says about one file (or one sidecar of it).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".css") as f:
    ...     MetaCache().get(f.name, os.fstat(f.fileno()), "", 0.0, sidecars=False).fields[:23]
    b'Content-Type: text/css;'
    """

    ident: tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns
    expires: float
    validators: Validators
    ctype: str
    fields: bytes  # Content-Type + the rest, for 200/206
    fields_no_type: bytes  # the rest, for multipart/byteranges (its own Content-Type)
    not_modified: bytes  # what a 304 repeats
    sidecars: tuple[str, ...]  # codings with a sidecar next to this file
    # The whole head of a keep-alive 200 and the Date block it was built with.
    _ok: bytes = b""
    _ok_date: bytes | None = None

    @property
    def etag(self) -> str:
        """The representation's ETag."""
        return self.validators.etag

    def ok_head(self, date_block: bytes) -> bytes:
        """The complete head of a 200 for the whole file on a kept-alive HTTP/1.1 connection.

        Rebuilt when the Date/Server block changes (once a second: ``DateBlock``
        hands out one bytes object per second); the size is the identity's, so a
        changed file, which gets a new ``Meta``, never gets a stale length.

        >>> m = MetaCache().get("/dev/null", os.stat("/dev/null"), "", 0.0, sidecars=False)
        >>> m.ok_head(b"") == headers.head(200, b"", m.fields, 0, b"")
        True
        """
        if date_block is not self._ok_date:
            self._ok = headers.head(200, date_block, self.fields, self.ident[2], b"")
            self._ok_date = date_block
        return self._ok


def _ident(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class MetaCache:
    """Per-process cache of ``Meta`` keyed by path and coding, revalidated by fstat identity.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".txt") as f:
    ...     meta = MetaCache().get(f.name, os.fstat(f.fileno()), "", 0.0, sidecars=False)
    ...     meta.ctype
    'text/plain; charset=utf-8'
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Meta] = {}

    def get(
        self, path: str, st: os.stat_result, coding: str, now: float, *, sidecars: bool
    ) -> Meta:
        """The Meta for ``path`` as served with ``coding`` ("" for the file itself)."""
        key = (path, coding)
        meta = self._entries.get(key)
        ident = _ident(st)
        if meta is not None and meta.ident == ident and meta.expires > now:
            return meta
        if len(self._entries) > 4096:
            self._entries.clear()  # crude bound: a scan of many files must not grow memory
        meta = _build(path, st, coding, now, sidecars)
        self._entries[key] = meta
        return meta


def _build(path: str, st: os.stat_result, coding: str, now: float, sidecars: bool) -> Meta:
    found: tuple[str, ...] = ()
    if coding:
        original = path[: -len(_SUFFIX[coding])]
        ctype = headers.file_content_type(original)
        vary = True
    else:
        ctype = headers.file_content_type(path)
        if sidecars:
            found = tuple(c for c, suffix in SIDECARS if _is_file(path + suffix))
        vary = bool(found)
    mtime = int(st.st_mtime)
    etag = headers.make_etag(st.st_mtime_ns, st.st_size, coding)
    rest = headers.representation_fields("", etag, mtime, encoding=coding, vary=vary)
    rest = rest.split(b"\r\n", 1)[1]  # drop the empty Content-Type line
    ctype_line = f"Content-Type: {ctype}\r\n".encode("latin-1")
    return Meta(
        ident=_ident(st),
        expires=now + META_TTL,
        validators=Validators(etag, mtime),
        ctype=ctype,
        fields=ctype_line + rest,
        fields_no_type=rest,
        not_modified=headers.validator_fields(etag, mtime, vary=vary),
        sidecars=found,
    )


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def sidecar_path(path: str, coding: str) -> str:
    """Where the sidecar for ``coding`` lives.

    >>> sidecar_path("/a/b.js", "gzip")
    '/a/b.js.gz'
    """
    return path + _SUFFIX[coding]


class Handle:
    """An open file shared by the requests that serve it; closed when the last lets go.

    ``file`` is a ``FileIO`` over the fd (it does not own it): zcopy resolves
    a FileIO with one fstat, a raw fd with an fstat and an fcntl.

    >>> h = Handle(os.open("/dev/null", os.O_RDONLY), 0.0, regular=False)
    >>> h.file is None, h.refs
    (True, 1)
    >>> os.close(h.fd)
    """

    __slots__ = ("expires", "fd", "file", "meta", "refs", "whole")

    def __init__(self, fd: int, expires: float, regular: bool = True) -> None:
        self.fd = fd
        self.file = io.FileIO(fd, "rb", closefd=False) if regular else None
        self.refs = 1
        self.expires = expires
        # For the server's inline path: the file's last Meta (to check against each
        # request's fstat) and a section of the whole file (rebuilt when the size changes).
        self.meta: Meta | None = None
        self.whole: Section | None = None


class OpenFiles:
    """A short-lived cache of open fds (nginx's ``open_file_cache``), for regular files only.

    Within ``ttl`` seconds a path is not opened again: a file changed in place
    is still seen at once (every request fstats the fd), a file *replaced*
    (renamed over) is seen after at most ``ttl``. The containment check ran
    when the fd was opened, so it holds for the fd's whole life. An fd in use
    by a transfer is closed only after that transfer lets go of it.

    >>> import tempfile
    >>> cache = OpenFiles("/", follow_symlinks=True)
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     h, st = cache.acquire(f.name, 0.0)
    ...     h is cache.acquire(f.name, 0.5)[0]
    True
    """

    __slots__ = ("_map", "dotfiles", "follow_symlinks", "max_entries", "root", "ttl")

    def __init__(
        self,
        root: str,
        *,
        follow_symlinks: bool,
        dotfiles: bool = False,
        ttl: float = META_TTL,
        max_entries: int = 512,
    ) -> None:
        self.root = root
        self.follow_symlinks = follow_symlinks
        self.dotfiles = dotfiles
        self.ttl = ttl
        self.max_entries = max_entries
        self._map: dict[str, Handle] = {}

    def acquire(self, path: str, now: float) -> tuple[Handle, os.stat_result]:
        """Open (or reuse) ``path``; the caller must ``release`` the handle. Raise ``Refused``."""
        h = self._map.get(path)
        if h is not None:
            if h.expires > now:
                h.refs += 1
                return h, os.fstat(h.fd)
            del self._map[path]
            self.release(h)
        fd, st = open_under(self.root, path, self.follow_symlinks, dotfiles=self.dotfiles)
        regular = stat.S_ISREG(st.st_mode)
        try:
            h = Handle(fd, now + self.ttl, regular)
        except BaseException:
            os.close(fd)
            raise
        if regular and self.ttl > 0:
            if len(self._map) >= self.max_entries:
                oldest = next(iter(self._map))
                self.release(self._map.pop(oldest))
            h.refs += 1  # the cache's own reference
            self._map[path] = h
        return h, st

    def cached(self, path: str, now: float) -> Handle | None:
        """The open handle for ``path`` if it is in the cache and fresh, without a reference.

        For a caller that is done with it before the event loop runs anything
        else (nothing can close it meanwhile); one that keeps it takes a
        reference (``refs += 1``) and lets go of it with ``release``.

        >>> cache = OpenFiles("/", follow_symlinks=True)
        >>> cache.cached("/etc/hostname", 0.0) is None
        True
        >>> h, _ = cache.acquire("/etc/hostname", 0.0)
        >>> cache.cached("/etc/hostname", 0.5) is h, cache.cached("/etc/hostname", 9.0)
        (True, None)
        >>> cache.release(h); cache.clear()
        """
        h = self._map.get(path)
        if h is not None and h.expires > now:
            return h
        return None

    def list_dir(self, dir_fd: int) -> list[listing.Entry]:
        """The entries a GET in the checked directory ``dir_fd`` would serve. Raise ``Refused``.

        Read from the fd (``os.scandir(fd)``), never by name: a directory
        swapped for a symlink after it was checked cannot be listed. A symlink
        entry is opened and checked like a request for it; what would be
        refused (outside the root, a dotfile by its resolved name, not a
        regular file or directory, dangling) is left out, with its size and time.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     d = os.path.realpath(d)
        ...     open(os.path.join(d, ".env"), "w").close(); open(os.path.join(d, "a"), "w").close()
        ...     os.symlink(".env", os.path.join(d, "envlink"))
        ...     os.symlink("/etc/hostname", os.path.join(d, "out"))
        ...     fd = os.open(d, os.O_RDONLY)
        ...     [e.name for e in OpenFiles(d, follow_symlinks=False).list_dir(fd)]
        ...     os.close(fd)
        ['a']
        """
        try:
            return listing.scan(dir_fd, self._servable, dotfiles=self.dotfiles)
        except OSError as exc:
            refused = refused_by(exc)
            if refused.status == 404:  # the directory itself went away or broke
                raise Refused(403, refused.reason) from None
            raise refused from None

    def _servable(self, dir_fd: int, entry: os.DirEntry[str]) -> os.stat_result | None:
        st = entry.stat(follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            return st if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) else None
        try:
            fd, st = open_under(
                self.root, entry.name, self.follow_symlinks, dotfiles=self.dotfiles, dir_fd=dir_fd
            )
        except Refused as refused:
            if refused.status == 503:
                raise OSError(errno.EMFILE, refused.reason) from None
            return None
        os.close(fd)
        return st

    def release(self, h: Handle) -> None:
        """Let go of a handle; the fd closes when nobody holds it."""
        h.refs -= 1
        if h.refs == 0:
            os.close(h.fd)

    def purge(self, now: float) -> None:
        """Close the expired entries (so deleted files do not stay open)."""
        for path in [p for p, h in self._map.items() if h.expires <= now]:
            self.release(self._map.pop(path))

    def clear(self) -> None:
        """Drop every cached fd (at shutdown)."""
        for h in self._map.values():
            self.release(h)
        self._map.clear()
