"""``FileResponse``: a file over ASGI the way ``zcopy serve`` sends it, by the fastest road offered.

It answers like ``zcopy serve``: ETag and Last-Modified, 304/412 from the
preconditions, If-Range, one Range (206) or several (``multipart/byteranges``),
416, HEAD, and ``Content-Disposition`` for a download name. The decisions are
``serve.plan.plan_file``'s, the very code static serving runs; the sending is
``delivery.deliver``'s: zerocopysend per part, pathsend for a whole file, or a
read loop on servers with neither (uvicorn). The file stays open between
requests (``opened.FILES``), revalidated by a stat of its path each time.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..serve.files import Refused
from ..serve.headers import TOKEN_CHARS, file_content_type, make_etag
from ..serve.plan import Plan, Representation, error_page, plan_file
from .compat import ResponseBase
from .delivery import Delivery, deliver
from .disposition import content_disposition
from .facts import method, request_fields
from .opened import FILES
from .types import Receive, Scope, Send

if TYPE_CHECKING:
    from starlette.background import BackgroundTask

# Header names the plan owns: a caller's value would contradict the body actually sent.
PLANNED = frozenset(
    {
        b"content-length",
        b"content-range",
        b"content-type",
        b"etag",
        b"last-modified",
        b"accept-ranges",
    }
)


@functools.lru_cache(maxsize=1024)
def describe(
    name: str, ctype: str | None, etag: str | None, mtime_ns: int, size: int, mtime: int
) -> Representation:
    """``Representation.for_file`` for a file version, remembered.

    The key is everything the answer depends on (the file's mtime and size
    among them), so a changed file is a new key, never a stale answer; what is
    saved per request is the type guess and two HTTP dates (about a third of
    the app-side cost of a ranged response).

    >>> a = describe("a.txt", None, None, 10**9, 3, 1)
    >>> a is describe("a.txt", None, None, 10**9, 3, 1), a.validators.etag
    (True, '"3b9aca00-3"')
    """
    return Representation.of(
        ctype or file_content_type(name), etag or make_etag(mtime_ns, size), mtime
    )


_ABSOLUTE: dict[str, str] = {}  # a path as given -> made absolute, for the ones that need it
ABSOLUTE_MAX = 1024  # then forgotten at once: a cache, never a leak


def absolute(path: str) -> str:
    """``os.path.abspath(path)``; a path that is absolute and normal already costs a lookup.

    The working directory is read every time for a relative path (it may change).

    >>> absolute("/srv/a.txt"), absolute("/srv//x/../a.txt"), absolute("a") == os.path.abspath("a")
    ('/srv/a.txt', '/srv/a.txt', True)
    """
    done = _ABSOLUTE.get(path)
    if done is not None:
        return done
    done = os.path.abspath(path)
    if path.startswith("/"):  # not relative to the working directory: the answer holds
        if len(_ABSOLUTE) >= ABSOLUTE_MAX:
            _ABSOLUTE.clear()
        _ABSOLUTE[path] = done
    return done


# A field value may hold HTAB, SP and visible or obs-text characters, no other control
# (RFC 9110 §5.5): CR or LF would end the line (the media type and ETag become header
# *lines* in the plan, re-split into fields), NUL is refused by servers mid-response.
_NOT_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(f"[{TOKEN_CHARS}]+")


def checked_value(what: str, value: str) -> str:
    """``value``, if it can be a header field value; else ``ValueError`` naming ``what``.

    >>> checked_value("media_type", "text/plain;\\tcharset=utf-8")
    'text/plain;\\tcharset=utf-8'
    >>> checked_value("media_type", "a/b\\r\\nSet-Cookie: x=1")
    Traceback (most recent call last):
    ...
    ValueError: FileResponse: media_type holds a control character: 'a/b\\r\\nSet-Cookie: x=1'
    """
    if _NOT_IN_VALUE.search(value):
        raise ValueError(f"FileResponse: {what} holds a control character: {value!r}")
    return value


def checked_name(what: str, name: str) -> str:
    """``name``, if it is an HTTP token; else ``ValueError`` naming ``what``.

    >>> checked_name("header name", "X-Note")
    'X-Note'
    """
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"FileResponse: {what} is not an HTTP token: {name!r}")
    return name


def with_charset(media_type: str) -> str:
    """A text type without a charset gets ``charset=utf-8`` (as Starlette does).

    >>> with_charset("text/csv"), with_charset("text/csv; charset=latin-1"), with_charset("a/b")
    ('text/csv; charset=utf-8', 'text/csv; charset=latin-1', 'a/b')
    """
    if media_type.startswith("text/") and "charset=" not in media_type.lower():
        return media_type + "; charset=utf-8"
    return media_type


class FileResponse(ResponseBase):
    """Send the file at ``path``; an ASGI app, and a Starlette ``Response`` when Starlette is there.

    ``status_code`` other than 200 sends the whole file with that status, no
    ranges or preconditions (as Starlette does); 1xx, 204 and 304 send no body.
    ``headers`` are added to every answer; a ``content-type`` among them acts as
    ``media_type`` and an ``etag`` replaces the computed one. ``filename`` names the download
    (``content_disposition_type`` "attachment" or "inline"). A missing file or a
    directory is answered 404, a FIFO, a device or an unreadable file 403.
    ``delivery`` tells, after a call, which road the body took. A control
    character (CR, LF, NUL, ...) in ``media_type`` or a header value, or a header
    name or disposition type that is not a token, is a ``ValueError`` here: never a
    header line the caller did not mean (the filename is made safe instead).

    >>> import asyncio, tempfile
    >>> sent = []
    >>> async def send(message):
    ...     sent.append(message)
    >>> async def receive():
    ...     return {"type": "http.disconnect"}
    >>> with tempfile.NamedTemporaryFile(suffix=".txt") as f:
    ...     _ = f.write(b"hello world"); f.flush()
    ...     scope = {"type": "http", "method": "GET", "headers": [(b"range", b"bytes=6-")],
    ...              "extensions": {"http.response.zerocopysend": {}}}
    ...     asyncio.run(FileResponse(f.name, filename="hi.txt")(scope, receive, send))
    >>> sent[0]["status"], sent[1]["offset"], sent[1]["count"], sent[1]["more_body"]
    (206, 6, 5, False)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        filename: str | None = None,
        content_disposition_type: str = "attachment",
        background: BackgroundTask | None = None,
    ) -> None:
        self.path = absolute(os.fspath(path))
        self.status_code = status_code
        self.filename = filename
        self.background = background
        self.etag: str | None = None
        raw: list[tuple[bytes, bytes]] = []
        for name, value in (headers or {}).items():
            key = checked_name("header name", name).lower()
            checked_value(f"header {name!r}", value)
            if key == "content-type" and media_type is None:
                media_type = value
            elif key == "etag":
                self.etag = value
            else:
                raw.append((key.encode("latin-1"), value.encode("latin-1")))
        if media_type is not None:
            media_type = with_charset(checked_value("media_type", media_type))
        self.media_type = media_type
        if filename is not None and not any(k == b"content-disposition" for k, _ in raw):
            kind = checked_name("content_disposition_type", content_disposition_type)
            value = content_disposition(filename, kind)
            raw.append((b"content-disposition", value.encode("latin-1")))
        self.raw_headers = raw
        self.delivery: Delivery | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request for the file."""
        verb = method(scope)
        # Fields added after construction (set_cookie, FastAPI's sub-response) count too.
        raw = self.raw_headers
        extra = [(k, v) for k, v in raw if k not in PLANNED] if raw else ()
        try:
            opened, st = FILES.acquire(self.path)
        except Refused as refused:
            plan = error_page(verb, refused.status, refused.fields)
            self.delivery = await deliver(scope, receive, send, plan, None, self.path, extra)
        else:
            try:
                rep = describe(
                    self.filename or self.path,
                    self.media_type,
                    self.etag,
                    st.st_mtime_ns,
                    st.st_size,
                    int(st.st_mtime),
                )
                plan = self.plan(verb, request_fields(scope), st.st_size, rep)
                self.delivery = await deliver(
                    scope, receive, send, plan, opened.file, self.path, extra
                )
            finally:
                FILES.release(opened)
        if self.background is not None:
            await self.background()

    def plan(self, verb: str, request: Mapping[str, str], size: int, rep: Representation) -> Plan:
        """The planner's answer, or the whole file under a status the caller chose.

        A status that never carries content (1xx, 204, 304) gets the head alone, with
        no Content-Length: a client reads no body after it, so the file's bytes would
        be taken for the start of the next response on the connection.
        """
        status = self.status_code
        if status == 200:
            return plan_file(verb, request, size, rep)
        if status < 200 or status in (204, 304):
            return Plan(status, rep.not_modified if status == 304 else rep.fields, None)
        return dataclasses.replace(plan_file(verb, {}, size, rep), status=status)
