"""``StaticFiles``: a directory as an ASGI app, on the planner and the roads ``FileResponse`` uses.

Request-target to file is ``zcopy serve``'s own code: ``serve.paths`` splits
the raw path before percent-decoding and refuses ``..`` above the root,
encoded slashes, NULs and (unless allowed) dotfiles; ``serve.files.open_under``
opens without blocking on a FIFO and checks where the opened fd really is, so
a symlink swapped in after the check cannot lead outside the directory; for
the same reason a server offering only pathsend (which opens the path again)
gets the read loop, unless neither check applies.
A directory is answered by its ``index.html`` (after a redirect that adds the
slash), never by a listing.
"""

from __future__ import annotations

import io
import os
import re
import stat
from urllib.parse import quote

from ..serve.files import Refused, open_under
from ..serve.paths import BadTarget, Target, parse_target
from ..serve.plan import Plan, error_page, plan_file
from .delivery import deliver
from .facts import method, request_fields
from .response import describe
from .types import Receive, Scope, Send

ALLOW = b"Allow: GET, HEAD\r\n"
_UNSAFE_IN_QUERY = re.compile(r"[\x00-\x20\x7f-\xff]")


def _under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (``/staticx`` is not below ``/static``).

    >>> _under("/static/a", "/static"), _under("/static", "/static"), _under("/staticx", "/static")
    (True, True, False)
    """
    return path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/")


def route_target(scope: Scope) -> str:
    """The request-target below this app's mount point, still percent-encoded.

    The raw path is used when the server gives one, so an encoded slash stays
    encoded for ``parse_target`` to refuse; the mount prefix (``root_path``) is cut off.

    >>> route_target({"path": "/static/a b", "raw_path": b"/static/a%20b", "root_path": "/static",
    ...     "query_string": b"v=1"})
    '/a%20b?v=1'
    >>> route_target({"path": "/static/a/b", "root_path": "/static"})
    '/a/b'
    >>> route_target({"path": "/staticsub/x", "raw_path": b"/staticsub/x", "root_path": "/static"})
    '/staticsub/x'
    """
    root = str(scope.get("root_path", "")).rstrip("/")
    raw = scope.get("raw_path")
    target: str | None = None
    if raw is not None:
        raw_s = bytes(raw).decode("latin-1")
        prefix = quote(root)
        if _under(raw_s, prefix):
            target = raw_s[len(prefix) :]
    if target is None:
        path = str(scope.get("path", "/"))
        if root and _under(path, root):
            path = path[len(root) :]
        target = quote(path, errors="surrogateescape")
    if not target.startswith("/"):
        target = "/" + target
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    return f"{target}?{query}" if query else target


class StaticFiles:
    """Serve the files under ``directory`` (GET and HEAD), with ranges and preconditions.

    >>> import asyncio, tempfile
    >>> sent = []
    >>> async def send(message):
    ...     sent.append(message)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = open(os.path.join(d, "a.txt"), "w").write("hi")
    ...     app = StaticFiles(d)
    ...     for path in ("/a.txt", "/../etc/passwd", "/.hidden"):
    ...         asyncio.run(app({"type": "http", "method": "GET", "path": path}, None, send))
    >>> [m["status"] for m in sent if m["type"] == "http.response.start"]
    [200, 400, 404]
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        follow_symlinks: bool = False,
        dotfiles: bool = False,
        index: str | None = "index.html",
    ) -> None:
        root = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(root):
            raise ValueError(f"StaticFiles: {os.fspath(directory)!r} is not a directory")
        self.root = root
        self.follow_symlinks = follow_symlinks
        self.dotfiles = dotfiles
        self.index = index
        # pathsend has the server open the path again, after the checks made on the fd
        # (containment, dotfiles): a symlink swapped in between would send what they
        # refused. Only with neither check is there nothing for a reopen to get past.
        self.by_path = follow_symlinks and dotfiles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request (and lifespan, when mounted as the whole app)."""
        kind = scope.get("type")
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1000})  # a refusal before accept
            return
        verb = method(scope)
        if verb not in ("GET", "HEAD"):
            await deliver(scope, receive, send, error_page(verb, 405, ALLOW), None, "")
            return
        try:
            target = parse_target(route_target(scope), dotfiles=self.dotfiles)
        except BadTarget as bad:
            await deliver(scope, receive, send, error_page(verb, bad.status), None, "")
            return
        opened = self._open(scope, verb, target)
        if isinstance(opened, Plan):
            await deliver(scope, receive, send, opened, None, "")
            return
        fd, st, path = opened
        with io.FileIO(fd, "rb") as file:
            rep = describe(path, None, None, st.st_mtime_ns, st.st_size, int(st.st_mtime))
            plan = plan_file(verb, request_fields(scope), st.st_size, rep)
            await deliver(scope, receive, send, plan, file, path if self.by_path else None)

    def _open(
        self, scope: Scope, verb: str, target: Target
    ) -> tuple[int, os.stat_result, str] | Plan:
        """The file a target names, opened: (fd, stat, path); or the answer that refuses it."""
        path = os.path.join(self.root, target.relpath) if target.segments else self.root
        try:
            fd, st = open_under(self.root, path, self.follow_symlinks, dotfiles=self.dotfiles)
            if not stat.S_ISDIR(st.st_mode):
                if target.slash:  # "file.txt/" names a directory that is not there
                    os.close(fd)
                    raise Refused(404, "a file is not a directory")
                return fd, st, path
            os.close(fd)
            if target.segments and not target.slash:
                return self._redirect(scope, verb, target.url_path, target.query)
            if self.index is None:
                raise Refused(404, "a directory, and no index file is served")
            path = os.path.join(path, self.index)
            fd, st = open_under(self.root, path, self.follow_symlinks, dotfiles=self.dotfiles)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                raise Refused(404, "the index is not a file")
            return fd, st, path
        except Refused as refused:
            return error_page(verb, refused.status, refused.fields)  # Retry-After on 503

    def _redirect(self, scope: Scope, verb: str, url_path: str, query: str) -> Plan:
        """301 to the directory's URL with its slash, under the mount point."""
        location = quote(str(scope.get("root_path", ""))) + url_path + "/"
        if query:
            # The query is the server's bytes (latin-1): CR/LF would end the Location line
            # and start a header of the client's choosing, so controls, space and
            # non-ASCII go percent-encoded.
            location += "?" + _UNSAFE_IN_QUERY.sub(lambda m: f"%{ord(m[0]):02X}", query)
        return error_page(verb, 301, f"Location: {location}\r\n".encode("latin-1"))


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: acknowledge both, so a server's lifespan "on" works."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
