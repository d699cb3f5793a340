"""Directory listings: ``scan`` reads an open directory, ``render`` (pure) escapes it into HTML."""

from __future__ import annotations

import errno
import html
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class Entry:
    """One listed name: directories get a trailing slash in the link.

    >>> Entry("docs", True, 0, 0.0).is_dir
    True
    """

    name: str
    is_dir: bool
    size: int
    mtime: float


Check = Callable[[int, os.DirEntry[str]], "os.stat_result | None"]


def scan(dir_fd: int, check: Check, *, dotfiles: bool = False) -> list[Entry]:
    """The entries of the open directory ``dir_fd``, sorted; dotfiles left out unless asked for.

    ``check(dir_fd, entry)`` returns the stat to show, or ``None`` to leave the
    entry out (what a request for it would refuse). An entry that vanishes
    meanwhile is left out; running out of fds raises ``OSError``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     open(os.path.join(d, "a"), "w").close(); open(os.path.join(d, ".b"), "w").close()
    ...     fd = os.open(d, os.O_RDONLY)
    ...     [e.name for e in scan(fd, lambda fd, e: e.stat())]
    ...     os.close(fd)
    ['a']
    """
    entries = []
    with os.scandir(dir_fd) as it:
        for de in it:
            if de.name.startswith(".") and not dotfiles:
                continue
            try:
                st = check(dir_fd, de)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                    raise
                continue
            if st is None:
                continue
            entries.append(Entry(de.name, stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime))
    entries.sort(key=lambda e: (not e.is_dir, e.name))
    return entries


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def render(url_path: str, entries: list[Entry]) -> bytes:
    """An HTML page listing ``entries`` of the directory at ``url_path`` (already %-encoded).

    Names are escaped for HTML and percent-encoded in links.

    >>> b"&lt;script&gt;" in render("/", [Entry("<script>", False, 1, 0)])
    True
    """
    title = html.escape(_display(url_path))
    rows = []
    if url_path != "/":
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
    for e in entries:
        suffix = "/" if e.is_dir else ""
        href = html.escape(quote(e.name, errors="surrogateescape") + suffix, quote=True)
        label = html.escape(e.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        size = "-" if e.is_dir else _size(e.size)
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.mtime))
        rows.append(
            f'<tr><td><a href="{href}">{label}{suffix}</a></td>'
            f"<td>{size}</td><td>{when}</td></tr>"
        )
    body = "\n".join(rows)
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n"
        "<table><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>\n"
        f"{body}\n</table></body></html>\n"
    ).encode()


def _display(url_path: str) -> str:
    from urllib.parse import unquote

    return unquote(url_path, errors="replace")
