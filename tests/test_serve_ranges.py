"""RFC 9110 Range parsing and normalisation, table-driven, plus the range-abuse cap."""

from __future__ import annotations

import pytest

from zcopy.serve.ranges import (
    COALESCE_GAP,
    MAX_RANGES,
    ByteRange,
    coalesce,
    parse_range,
    plan_ranges,
    satisfiable,
)

PARSE = [
    ("bytes=0-0", [(0, 0)]),
    ("bytes=0-499", [(0, 499)]),
    ("bytes=500-", [(500, None)]),
    ("bytes=-500", [(None, 500)]),
    ("BYTES=1-2", [(1, 2)]),
    ("bytes = 1-2", [(1, 2)]),
    ("bytes=1-2, 4-5", [(1, 2), (4, 5)]),
    ("bytes=1-2,,4-5,", [(1, 2), (4, 5)]),  # empty list elements are allowed
    ("bytes= 1 - 2 ", [(1, 2)]),
    ("bytes=-0", [(None, 0)]),
    ("bytes=5-1", None),  # last < first: invalid, ignore the header
    ("bytes=", None),
    ("bytes=-", None),
    ("bytes=a-b", None),
    ("bytes=1", None),
    ("bytes=--1", None),
    ("bytes=1-2-3", None),
    ("bytes=+1-2", None),
    ("bytes=0x10-20", None),
    ("bytes=\u0661-\u0662", None),  # non-ASCII (Arabic-Indic) digits
    ("items=0-1", None),
    ("0-1", None),
    ("bytes=" + "9" * 20 + "-", None),  # longer than any offset
    ("bytes=0-1," * (MAX_RANGES + 1), None),
]


@pytest.mark.parametrize(("header", "expected"), PARSE)
def test_parse_range(header: str, expected: object) -> None:
    assert parse_range(header) == expected


# The one-spec fast path (lower-case ``bytes=``, no spaces) against the general parse,
# reached by the same header with a space after the unit: the two must always agree.
ONE_SPEC = ["0-0", "0-", "7-7", "5-1", "1-" + "9" * 19, "9" * 19 + "-", "9" * 20 + "-",
            "1-" + "9" * 20, "0-01", "00-1", "-5", "1-2,3-4", "\u0661-2", "1 -2"]


@pytest.mark.parametrize("spec", ONE_SPEC)
def test_the_one_spec_fast_path_agrees_with_the_general_parse(spec: str) -> None:
    assert parse_range(f"bytes={spec}") == parse_range(f"bytes ={spec}")


def test_a_single_range_never_costs_the_multipart_framing() -> None:
    def refuse() -> int:
        raise AssertionError("part overhead worked out for a single range")

    assert plan_ranges("bytes=5-9", 100, refuse).ranges == (ByteRange(5, 9),)
    assert plan_ranges("bytes=5-9,0-6", 100, refuse).ranges == (ByteRange(0, 9),)  # coalesced
    assert plan_ranges("bytes=0-0,190-190", 200, lambda: 10).status == 206
    assert plan_ranges("bytes=0-0,190-190", 200, lambda: 99).status == 200  # would amplify


SATISFY = [
    ([(0, 9)], 100, [ByteRange(0, 9)]),
    ([(90, 200)], 100, [ByteRange(90, 99)]),
    ([(100, None)], 100, []),
    ([(99, None)], 100, [ByteRange(99, 99)]),
    ([(None, 10)], 100, [ByteRange(90, 99)]),
    ([(None, 500)], 100, [ByteRange(0, 99)]),
    ([(None, 0)], 100, []),
    ([(0, None)], 0, []),
    ([(None, 1)], 0, []),
    ([(200, 300), (0, 0)], 100, [ByteRange(0, 0)]),
]


@pytest.mark.parametrize(("specs", "size", "expected"), SATISFY)
def test_satisfiable(
    specs: list[tuple[int | None, int | None]], size: int, expected: object
) -> None:
    assert satisfiable(specs, size) == expected


COALESCE = [
    ([ByteRange(0, 9), ByteRange(10, 19)], 0, [ByteRange(0, 19)]),  # adjacent
    ([ByteRange(0, 9), ByteRange(5, 7)], 0, [ByteRange(0, 9)]),  # contained
    ([ByteRange(20, 29), ByteRange(0, 9)], 0, [ByteRange(0, 9), ByteRange(20, 29)]),  # sorted
    ([ByteRange(0, 9), ByteRange(20, 29)], 10, [ByteRange(0, 29)]),  # gap under the cost
    ([ByteRange(0, 9), ByteRange(21, 29)], 10, [ByteRange(0, 9), ByteRange(21, 29)]),
]


@pytest.mark.parametrize(("ranges", "gap", "expected"), COALESCE)
def test_coalesce(ranges: list[ByteRange], gap: int, expected: list[ByteRange]) -> None:
    assert coalesce(ranges, gap) == expected


PLAN = [
    (None, 100, 200, []),
    ("bytes=0-9", 100, 206, [(0, 9)]),
    ("bytes=-10", 100, 206, [(90, 99)]),
    ("bytes=50-", 100, 206, [(50, 99)]),
    ("bytes=0-", 100, 206, [(0, 99)]),
    ("bytes=100-", 100, 416, []),
    ("bytes=-0", 100, 416, []),
    ("bytes=0-0", 0, 416, []),
    ("bytes=x", 100, 200, []),  # invalid: ignored
    ("bytes=0-0,1-1", 100, 206, [(0, 1)]),  # merged into one: not multipart
    ("bytes=0-9,5000-5009", 10000, 206, [(0, 9), (5000, 5009)]),
    ("bytes=5000-5009,0-9", 10000, 206, [(0, 9), (5000, 5009)]),
    # Overlapping ranges never send a byte twice.
    ("bytes=0-999,0-999,0-999", 10000, 206, [(0, 999)]),
    # Many tiny far-apart ranges cost more than the file: the whole file, once.
    ("bytes=" + ",".join(f"{i * 100}-{i * 100}" for i in range(20)), 2000, 200, []),
    # Too many range-specs: ignored.
    ("bytes=" + ",".join(f"{i * 1000}-{i * 1000}" for i in range(MAX_RANGES + 1)), 10**6, 200, []),
]


@pytest.mark.parametrize(("header", "size", "status", "ranges"), PLAN)
def test_plan(header: str | None, size: int, status: int, ranges: list[tuple[int, int]]) -> None:
    plan = plan_ranges(header, size, part_overhead=100)
    assert plan.status == status
    assert [(r.first, r.last) for r in plan.ranges] == ranges


def test_plan_never_amplifies() -> None:
    """Whatever the header, a 206 body plus part framing stays under the file size."""
    size = 5000
    for n in range(2, MAX_RANGES + 1):
        for width in (1, 10, 100):
            header = "bytes=" + ",".join(f"{i * 150}-{i * 150 + width - 1}" for i in range(n))
            plan = plan_ranges(header, size, part_overhead=COALESCE_GAP)
            if plan.status == 206 and len(plan.ranges) > 1:
                total = sum(r.length + COALESCE_GAP for r in plan.ranges)
                assert total < size
                firsts = [r.first for r in plan.ranges]
                assert firsts == sorted(firsts)
                for a, b in zip(plan.ranges, plan.ranges[1:], strict=False):
                    assert a.last + COALESCE_GAP < b.first


def test_content_range() -> None:
    assert ByteRange(5, 9).content_range(10) == "bytes 5-9/10"


@pytest.mark.parametrize(
    ("value", "count"),
    [
        ("bytes=" + ",".join(["-1"] * MAX_RANGES), MAX_RANGES),
        ("bytes=" + ",".join(["-1"] * (MAX_RANGES + 1)), None),
        ("bytes=" + ",".join([f"{i}-{i}" for i in range(32)] + ["-1"] * 500), None),
        ("bytes=" + ",".join(["-1"] * 19_000), None),
        ("bytes=0-0" + "," * (MAX_RANGES * 2), None),  # empty elements count too
        ("bytes=0-0" + "," * (MAX_RANGES * 2 - 1), 1),
    ],
)
def test_every_spec_counts_toward_the_cap(value: str, count: int | None) -> None:
    specs = parse_range(value)
    assert (None if specs is None else len(specs)) == count

