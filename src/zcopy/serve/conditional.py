"""RFC 9110 §13 preconditions, sans-IO: 304, 412, and whether If-Range lets Range apply.

Evaluation order is §13.2.2: If-Match, else If-Unmodified-Since (412); then
If-None-Match, else If-Modified-Since (304 for GET/HEAD); then If-Range.
"""

from __future__ import annotations

import calendar
import email.utils
import re
from dataclasses import dataclass


def http_date(ts: float) -> str:
    """Format a POSIX timestamp as an IMF-fixdate.

    >>> http_date(0)
    'Thu, 01 Jan 1970 00:00:00 GMT'
    """
    return email.utils.formatdate(ts, usegmt=True)


def parse_http_date(value: str) -> int | None:
    """Parse an HTTP-date (IMF-fixdate, RFC 850 or asctime) to whole seconds; None if invalid.

    >>> parse_http_date("Thu, 01 Jan 1970 00:00:10 GMT")
    10
    >>> parse_http_date("Thursday, 01-Jan-70 00:00:10 GMT"), parse_http_date("yesterday")
    (10, None)
    """
    try:
        parts = email.utils.parsedate(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parts is None:
        return None
    try:
        return calendar.timegm(parts)
    except (OverflowError, ValueError):
        return None


# One element of an entity-tag list: a quoted tag, which may hold a comma (RFC 9110 §8.8.3:
# etagc is any visible character but DQUOTE), or anything else up to the next comma.
_LIST_ELEMENT = re.compile(r'[\s,]*((?:W/)?"[^"]*"|[^\s,]+)[ \t]*(?=,|\Z)')


def _tags(value: str) -> list[str] | None:
    """Split an entity-tag list; None stands for ``*``.

    >>> _tags('"a,b", W/"c" ,,"d"'), _tags(" * "), '"a"' in _tags('"a" junk')
    (['"a,b"', 'W/"c"', '"d"'], None, False)
    """
    value = value.strip()
    if value == "*":
        return None
    return _LIST_ELEMENT.findall(value)


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def strong_match(header: str, etag: str) -> bool:
    """If-Match comparison: strong, weak tags never match (``*`` matches anything).

    >>> strong_match('"a", "b"', '"b"'), strong_match('W/"b"', '"b"'), strong_match("*", '"x"')
    (True, False, True)
    """
    tags = _tags(header)
    if tags is None:
        return True
    return not etag.startswith("W/") and etag in tags


def weak_match(header: str, etag: str) -> bool:
    """If-None-Match comparison: weak, ``W/`` prefixes ignored.

    >>> weak_match('W/"b"', '"b"'), weak_match('"a"', '"b"')
    (True, False)
    """
    tags = _tags(header)
    if tags is None:
        return True
    mine = _opaque(etag)
    return any(_opaque(t) == mine for t in tags)


@dataclass(frozen=True, slots=True)
class Validators:
    """The validators of the selected representation: its ETag and mtime (whole seconds).

    >>> Validators('"1-2"', 0).etag
    '"1-2"'
    """

    etag: str
    mtime: int


def evaluate(
    method: str,
    v: Validators,
    *,
    if_match: str | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    if_unmodified_since: str | None = None,
) -> int:
    """Return 412, 304, or 200 (carry on) per RFC 9110 §13.2.2.

    >>> v = Validators('"x"', 100)
    >>> evaluate("GET", v, if_none_match='"x"'), evaluate("GET", v, if_match='"y"')
    (304, 412)
    >>> evaluate("GET", v, if_modified_since="Thu, 01 Jan 1970 00:01:40 GMT")
    304
    """
    if if_match is not None:
        if not strong_match(if_match, v.etag):
            return 412
    elif if_unmodified_since is not None:
        since = parse_http_date(if_unmodified_since)
        if since is not None and v.mtime > since:
            return 412
    if if_none_match is not None:
        if weak_match(if_none_match, v.etag):
            return 304 if method in ("GET", "HEAD") else 412
    elif if_modified_since is not None and method in ("GET", "HEAD"):
        since = parse_http_date(if_modified_since)
        if since is not None and v.mtime <= since:
            return 304
    return 200


def if_range_allows(if_range: str | None, v: Validators) -> bool:
    """Whether Range may be honoured: no If-Range, a strongly matching ETag, or the exact date.

    A weak ETag or a date that differs from Last-Modified means the client's
    copy is stale: send the whole representation instead.

    >>> v = Validators('"x"', 100)
    >>> if_range_allows('"x"', v), if_range_allows('W/"x"', v), if_range_allows('"y"', v)
    (True, False, False)
    >>> if_range_allows("Thu, 01 Jan 1970 00:01:40 GMT", v)
    True
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return not value.startswith("W/") and not v.etag.startswith("W/") and value == v.etag
    return parse_http_date(value) == v.mtime
