"""Request-target to a path under the served root, sans-IO: the first line of defence.

``parse_target`` turns the raw request-target into clean path segments or
refuses it. It splits on ``/`` *before* percent-decoding, so an encoded slash
can never create a new segment, and refuses any segment that decodes to a
slash, a backslash, a NUL or another control character. ``.`` and ``..``
(encoded or not) are normalised; climbing above the root is refused.
Dotfiles are refused unless allowed. ``within_root`` is the second line: the
kernel's resolved path of the opened file must still lie under the root, which
is what catches symlinks (see ``server.py``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_HEX = frozenset("0123456789abcdefABCDEF")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed request-target: the decoded segments, and whether the path ended in ``/``.

    >>> parse_target("/a/b/?q=1")
    Target(segments=('a', 'b'), slash=True, query='q=1')
    """

    segments: tuple[str, ...]
    slash: bool
    query: str = ""

    @property
    def relpath(self) -> str:
        """The segments joined for the filesystem (``""`` for the root itself)."""
        return "/".join(self.segments)

    @property
    def url_path(self) -> str:
        """The normalised path, percent-encoded again, for redirects and listings."""
        from urllib.parse import quote

        path = "/" + "/".join(quote(s, errors="surrogateescape") for s in self.segments)
        return path + "/" if self.slash and self.segments else path


class BadTarget(ValueError):
    """The request-target is refused; ``status`` is 400 (malformed) or 404 (hidden).

    >>> BadTarget(404, "dotfile").status
    404
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _unquote(seg: str) -> str:
    """Strict percent-decoding: a malformed escape is an error, not literal text."""
    if "%" not in seg:
        return seg
    out = bytearray()
    i, n = 0, len(seg)
    while i < n:
        ch = seg[i]
        if ch == "%":
            hx = seg[i + 1 : i + 3]
            if len(hx) != 2 or not set(hx) <= _HEX:
                raise BadTarget(400, f"malformed percent-escape in {seg!r}")
            out.append(int(hx, 16))
            i += 3
        else:
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
    # Filenames are bytes on Linux: keep undecodable ones round-trippable.
    return out.decode("utf-8", "surrogateescape")


def _strip_absolute_form(target: str) -> str:
    """``http://host/path`` -> ``/path`` (RFC 9112 §3.2.2: servers must accept it)."""
    lower = target[:8].lower()
    for scheme in ("http://", "https://"):
        if lower.startswith(scheme):
            rest = target[len(scheme) :]
            slash = rest.find("/")
            if slash < 0:
                # The authority may carry the query: http://host?q
                q = rest.find("?")
                return "/" + (rest[q:] if q >= 0 else "")
            return rest[slash:]
    return target


def parse_target(raw: str | bytes, *, dotfiles: bool = False) -> Target:
    """Decode and normalise a request-target; raise ``BadTarget`` if it is refused.

    >>> parse_target("/docs/%2e%2e/a%20b.txt").segments
    ('a b.txt',)
    >>> parse_target("/%2e%2e/etc/passwd")
    Traceback (most recent call last):
    ...
    zcopy.serve.paths.BadTarget: path climbs above the root
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            raise BadTarget(400, "request-target is not ASCII") from None
    target = _strip_absolute_form(raw)
    path, _, query = target.partition("?")
    path = path.partition("#")[0]
    if not path.startswith("/"):
        raise BadTarget(400, "request-target is not an absolute path")
    segments: list[str] = []
    raw_segments = path.split("/")[1:]
    for raw_seg in raw_segments:
        seg = _unquote(raw_seg)
        if seg in ("", "."):
            continue
        if seg == "..":
            if not segments:
                raise BadTarget(400, "path climbs above the root")
            segments.pop()
            continue
        if "/" in seg or "\\" in seg:
            raise BadTarget(400, "encoded slash or backslash in a path segment")
        if _CONTROL.search(seg):
            raise BadTarget(400, "control character or NUL in the path")
        if seg.startswith(".") and not dotfiles:
            raise BadTarget(404, "dotfiles are hidden")
        segments.append(seg)
    last_raw = _unquote(raw_segments[-1]) if raw_segments else ""
    slash = last_raw in ("", ".", "..")
    return Target(tuple(segments), slash, query)


def within_root(root: str, real: str) -> bool:
    """Whether the resolved path ``real`` is ``root`` itself or lies under it.

    >>> within_root("/srv/www", "/srv/www/a"), within_root("/srv/www", "/srv/wwwx/a")
    (True, False)
    """
    if real == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep
    return real.startswith(prefix)
