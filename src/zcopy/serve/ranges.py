"""RFC 9110 byte ranges, sans-IO: parse ``Range``, then normalise against the file size.

Abuse defence (the cap is documented in docs/serve.md):

* more than ``MAX_RANGES`` range-specs: the Range header is ignored and the
  whole representation is sent once (Apache's ``MaxRanges`` answer);
* ranges are sorted and coalesced when they overlap or sit closer than the
  cost of a multipart part header (RFC 9110 §14.2 allows both);
* if the multipart response would be larger than the whole representation,
  the whole representation is sent instead: a range request never costs more
  bytes than a plain GET (no amplification).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# The most range-specs one request may carry before Range is ignored.
MAX_RANGES = 32
# Two ranges closer than this are merged: a part header costs about this much.
COALESCE_GAP = 80
# Longer digit strings cannot be file offsets (2**63 has 19 digits).
_MAX_DIGITS = 19
# The form nearly every client sends (a player, a download resumer): one ``first-[last]``.
_ONE = re.compile(r"bytes=([0-9]{1,19})-([0-9]{0,19})")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range ``first..last`` of a representation.

    >>> ByteRange(0, 9).length
    10
    """

    first: int
    last: int

    @property
    def length(self) -> int:
        """Bytes in the range."""
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value for this range of a ``size``-byte representation.

        >>> ByteRange(0, 9).content_range(100)
        'bytes 0-9/100'
        """
        return f"bytes {self.first}-{self.last}/{size}"


Spec = tuple[int | None, int | None]  # (first, last): (a, b), (a, None) or (None, suffix)


def parse_range(value: str) -> list[Spec] | None:
    """Parse a ``Range`` header into range-specs; ``None`` if it must be ignored.

    Ignored: another unit, a syntax error, ``last < first``, or more than
    ``MAX_RANGES`` specs of any form (a suffix ``-N`` counts like ``a-b``).
    Empty list elements are allowed (RFC 9110 §5.6.1), but count toward the
    cap too: parsing stops as soon as the header is known to be ignored.

    >>> parse_range("bytes=0-99, 200-, -5")
    [(0, 99), (200, None), (None, 5)]
    >>> parse_range("bytes=5-1") is None, parse_range("items=0-1") is None
    (True, True)
    >>> parse_range("bytes=" + ",".join(["-1"] * (MAX_RANGES + 1))) is None
    True
    """
    one = _ONE.fullmatch(value)
    if one is not None:  # the general parse below gives the same answer, slower
        first = int(one[1])
        last = int(one[2]) if one[2] else None
        return None if last is not None and last < first else [(first, last)]
    unit, sep, rest = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    # A bounded split: element MAX_RANGES * 2 + 1 (the unsplit rest) is never looked at.
    items = rest.split(",", MAX_RANGES * 2)
    if len(items) > MAX_RANGES * 2:
        return None
    specs: list[Spec] = []
    for raw in items:
        item = raw.strip(" \t")
        if not item:
            continue
        if len(specs) == MAX_RANGES:
            return None
        first_s, dash, last_s = item.partition("-")
        if not dash:
            return None
        first_s, last_s = first_s.strip(" \t"), last_s.strip(" \t")
        if not _digits(first_s, allow_empty=True) or not _digits(last_s, allow_empty=True):
            return None
        if not first_s:
            if not last_s:
                return None
            specs.append((None, int(last_s)))
            continue
        first = int(first_s)
        last = int(last_s) if last_s else None
        if last is not None and last < first:
            return None
        specs.append((first, last))
    return specs or None


def _digits(s: str, *, allow_empty: bool) -> bool:
    if not s:
        return allow_empty
    return len(s) <= _MAX_DIGITS and s.isascii() and s.isdigit()


def satisfiable(specs: list[Spec], size: int) -> list[ByteRange]:
    """Clamp specs to ``size``; drop the unsatisfiable ones (an empty list means 416).

    >>> satisfiable([(0, 99), (200, None), (None, 5), (5000, None)], 1000)
    [ByteRange(first=0, last=99), ByteRange(first=200, last=999), ByteRange(first=995, last=999)]
    """
    out: list[ByteRange] = []
    for first, last in specs:
        if first is None:
            assert last is not None
            if last == 0 or size == 0:
                continue
            out.append(ByteRange(max(0, size - last), size - 1))
        elif first < size:
            end = size - 1 if last is None else min(last, size - 1)
            out.append(ByteRange(first, end))
    return out


def coalesce(ranges: list[ByteRange], gap: int = COALESCE_GAP) -> list[ByteRange]:
    """Sort, then merge ranges that overlap or lie closer than ``gap`` bytes apart.

    >>> coalesce([ByteRange(50, 59), ByteRange(0, 9), ByteRange(5, 20)], gap=0)
    [ByteRange(first=0, last=20), ByteRange(first=50, last=59)]
    """
    merged: list[ByteRange] = []
    for r in sorted(ranges, key=lambda r: r.first):
        if merged and r.first <= merged[-1].last + 1 + gap:
            prev = merged[-1]
            if r.last > prev.last:
                merged[-1] = ByteRange(prev.first, r.last)
        else:
            merged.append(r)
    return merged


@dataclass(frozen=True, slots=True)
class RangePlan:
    """What to send for a request: ``status`` 200 (whole), 206 (``ranges``) or 416.

    >>> plan_ranges("bytes=0-0", 10)
    RangePlan(status=206, ranges=(ByteRange(first=0, last=0),))
    """

    status: int
    ranges: tuple[ByteRange, ...] = ()


WHOLE = RangePlan(200)
UNSATISFIABLE = RangePlan(416)


def plan_ranges(
    value: str | None, size: int, part_overhead: int | Callable[[], int] = COALESCE_GAP
) -> RangePlan:
    """Decide 200/206/416 for a ``Range`` header against a ``size``-byte representation.

    ``part_overhead`` estimates the bytes one multipart part adds (boundary and
    part headers): a multipart answer larger than the whole file becomes 200.
    It may be a function, called only when there are several ranges (working it
    out costs more than the rest of a single-range plan).

    >>> plan_ranges("bytes=10-", 5).status, plan_ranges("bytes=x", 5).status
    (416, 200)
    >>> plan_ranges("bytes=-5", 0).status, plan_ranges("bytes=0-", 0).status
    (200, 416)
    >>> [r.length for r in plan_ranges("bytes=0-1,100-101", 1000).ranges]
    [2, 2]
    """
    if value is None:
        return WHOLE
    specs = parse_range(value)
    if specs is None:
        return WHOLE
    ranges = satisfiable(specs, size)
    if not ranges:
        # RFC 9110 §14.1.1: of an empty representation a suffix-range of non-zero length
        # is satisfiable, yet names no byte a 206 could carry: the whole (empty) one does.
        if size == 0 and any(first is None and last for first, last in specs):
            return WHOLE
        return UNSATISFIABLE
    if len(ranges) > 1:
        ranges = coalesce(ranges)
    if len(ranges) == 1:
        return RangePlan(206, (ranges[0],))
    per_part = part_overhead() if callable(part_overhead) else part_overhead
    cost = sum(r.length + per_part for r in ranges)
    if cost >= size:
        return WHOLE  # never send more than the whole file would cost
    return RangePlan(206, tuple(ranges))
