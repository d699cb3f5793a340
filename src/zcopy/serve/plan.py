"""The answer to a GET or HEAD of one file, sans-IO: status, header lines and body parts.

``plan_file`` takes the request's facts (method and the few header fields
that matter) and the file's description (size, validators, content type) and
decides everything a server has to say: 200, 206 (one range or
``multipart/byteranges``), 304, 412 or 416, the header lines, the
Content-Length, and the body as an ordered tuple of parts. A part is either
``bytes`` (framing or a small error page, written from memory) or a
``ByteRange`` of the file (sent by sendfile, or by ASGI zerocopysend). It
opens nothing and sends nothing: ``zcopy serve`` (``server.py``) and
``zcopy.asgi.FileResponse`` both ask it, then move the bytes their own way.

Precondition order is RFC 9110 §13.2.2 (``conditional.evaluate``); the range
cap and the no-amplification rule are ``ranges.plan_ranges``'s; the framing is
``multipart.frames``'s. HEAD gets the GET's status and Content-Length, no
parts, and never a range (a range of nothing is meaningless).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from . import headers, multipart
from .conditional import Validators, evaluate, if_range_allows
from .ranges import ByteRange, plan_ranges

HTML = b"Content-Type: text/html; charset=utf-8\r\n"
# The request header fields the planner reads (lower-case); a caller need pass no others.
FIELDS = (
    "range",
    "if-range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
)

Part = bytes | ByteRange


class Described(Protocol):
    """What the planner needs to know about a file's representation (``files.Meta`` is one)."""

    @property
    def validators(self) -> Validators:
        """ETag and whole-second mtime."""

    @property
    def ctype(self) -> str:
        """The Content-Type value (repeated inside each multipart part)."""

    @property
    def fields(self) -> bytes:
        """Header lines for a 200 or single-range 206, Content-Type first."""

    @property
    def fields_no_type(self) -> bytes:
        """The same lines without Content-Type (multipart has its own)."""

    @property
    def not_modified(self) -> bytes:
        """The lines a 304 repeats."""


@dataclass(frozen=True, slots=True)
class Representation:
    """A ``Described`` built from parts, for callers without a ``files.Meta`` (ASGI apps).

    >>> rep = Representation.of("text/plain", '"1-2"', 0)
    >>> rep.fields.splitlines()[0], rep.not_modified.splitlines()[1]
    (b'Content-Type: text/plain', b'ETag: "1-2"')
    """

    validators: Validators
    ctype: str
    fields: bytes
    fields_no_type: bytes
    not_modified: bytes

    @classmethod
    def of(cls, ctype: str, etag: str, mtime: int) -> Representation:
        """Describe a file served as is (no content coding) with this type, ETag and mtime."""
        rest = headers.representation_fields("", etag, mtime).split(b"\r\n", 1)[1]
        return cls(
            validators=Validators(etag, mtime),
            ctype=ctype,
            fields=f"Content-Type: {ctype}\r\n".encode("latin-1") + rest,
            fields_no_type=rest,
            not_modified=headers.validator_fields(etag, mtime),
        )

    @classmethod
    def for_file(
        cls, name: str, st: os.stat_result, *, ctype: str | None = None, etag: str | None = None
    ) -> Representation:
        """Describe a file as ``zcopy serve`` would: type from ``name``, ETag from mtime and size.

        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        ...     rep = Representation.for_file(f.name, os.stat(f.name))
        >>> rep.ctype, rep.validators.etag.endswith('-0"')
        ('text/plain; charset=utf-8', True)
        """
        return cls.of(
            ctype or headers.file_content_type(name),
            etag or headers.make_etag(st.st_mtime_ns, st.st_size),
            int(st.st_mtime),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """A decided response: send a head with ``status``, ``fields`` and ``length``, then ``parts``.

    ``fields`` are CRLF-terminated header lines without Date, Server,
    Content-Length or Connection (the sender's business). ``length`` is the
    Content-Length (``None``: none, as for 304). ``whole`` says the body is the
    entire file as one part, the only case a pathsend-style "send this file"
    can carry.

    >>> Plan(304, b"", None).parts
    ()
    """

    status: int
    fields: bytes
    length: int | None
    parts: tuple[Part, ...] = ()
    whole: bool = False

    @property
    def file_bytes(self) -> int:
        """How many body bytes come from the file (the rest is framing from memory).

        >>> Plan(206, b"", 12, (b"ab", ByteRange(0, 9))).file_bytes
        10
        """
        return sum(p.length for p in self.parts if isinstance(p, ByteRange))


def error_page(method: str, status: int, extra: bytes = b"") -> Plan:
    """A small HTML answer (412, 416, 404, ...); HEAD gets the head alone.

    >>> p = error_page("GET", 416, b"Content-Range: bytes */0\\r\\n")
    >>> p.status, p.length == len(p.parts[0]), p.fields.endswith(b"*/0\\r\\n")
    (416, True, True)
    """
    body = headers.simple_body(status)
    parts: tuple[Part, ...] = () if method == "HEAD" else (body,)
    return Plan(status, HTML + extra, len(body), parts)


def plan_file(
    method: str,
    request: Mapping[str, str],
    size: int,
    rep: Described,
    *,
    boundary: str | None = None,
) -> Plan:
    """Decide the response to ``method`` with header fields ``request`` (lower-case names).

    ``boundary`` fixes the multipart boundary (tests); by default a random one.

    >>> rep = Representation.of("text/plain", '"x"', 0)
    >>> plan_file("GET", {}, 10, rep).parts
    (ByteRange(first=0, last=9),)
    >>> plan_file("GET", {"range": "bytes=-3"}, 10, rep).parts
    (ByteRange(first=7, last=9),)
    >>> [plan_file("GET", h, 10, rep).status for h in ({"if-none-match": '"x"'},
    ...     {"if-match": '"y"'}, {"range": "bytes=10-"})]
    [304, 412, 416]
    >>> plan_file("HEAD", {"range": "bytes=0-0"}, 10, rep).status
    200
    """
    # Absent every precondition field (the common case), evaluation is skipped.
    if (
        "if-match" in request
        or "if-none-match" in request
        or "if-modified-since" in request
        or "if-unmodified-since" in request
    ):
        status = evaluate(
            method,
            rep.validators,
            if_match=request.get("if-match"),
            if_none_match=request.get("if-none-match"),
            if_modified_since=request.get("if-modified-since"),
            if_unmodified_since=request.get("if-unmodified-since"),
        )
        if status == 304:
            return Plan(304, rep.not_modified, None)
        if status == 412:
            return error_page(method, 412)
    head_only = method == "HEAD"
    rng = None if head_only else request.get("range")
    if rng is not None and if_range_allows(request.get("if-range"), rep.validators):
        ctype = rep.ctype
        # Costed (and the boundary drawn: a random-bytes syscall) only for several ranges.
        stand_in = boundary or multipart.SAME_LENGTH
        ranges = plan_ranges(rng, size, lambda: multipart.part_overhead(stand_in, ctype, size))
        if ranges.status == 416:
            return error_page(method, 416, f"Content-Range: bytes */{size}\r\n".encode())
        if ranges.status == 206:
            if len(ranges.ranges) == 1:
                r = ranges.ranges[0]
                fields = rep.fields + f"Content-Range: {r.content_range(size)}\r\n".encode()
                return Plan(206, fields, r.length, (r,))
            if boundary is None:
                boundary = multipart.new_boundary()
            parts = tuple(multipart.frames(boundary, ctype, ranges.ranges, size))
            length = sum(len(p) if isinstance(p, bytes) else p.length for p in parts)
            fields = (
                f"Content-Type: {multipart.content_type(boundary)}\r\n".encode()
                + rep.fields_no_type
            )
            return Plan(206, fields, length, parts)
    if head_only or size == 0:
        return Plan(200, rep.fields, size)
    return Plan(200, rep.fields, size, (ByteRange(0, size - 1),), whole=True)
