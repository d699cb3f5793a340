"""The response planner, table-tested without sockets: request facts + file description -> plan."""

from __future__ import annotations

import email.message
import email.parser
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zcopy.serve import headers
from zcopy.serve.conditional import http_date
from zcopy.serve.files import MetaCache
from zcopy.serve.plan import FIELDS, HTML, Plan, Representation, error_page, plan_file
from zcopy.serve.ranges import MAX_RANGES, ByteRange

SIZE = 1000
MTIME = 1_000_000
ETAG = '"e-3e8"'
REP = Representation.of("text/plain", ETAG, MTIME)
DATA = bytes(i % 251 for i in range(SIZE))
SAME_DATE = http_date(MTIME)
EARLIER = http_date(MTIME - 60)
LATER = http_date(MTIME + 60)
WHOLE = (ByteRange(0, SIZE - 1),)


def body_of(plan: Plan, data: bytes = DATA) -> bytes:
    """What a sender would put on the wire after the head."""
    return b"".join(p if isinstance(p, bytes) else data[p.first : p.last + 1] for p in plan.parts)


# (method, request fields, expected status, expected file ranges, expected Content-Length)
TABLE: list[tuple[str, dict[str, str], int, tuple[ByteRange, ...], int | None]] = [
    ("GET", {}, 200, WHOLE, SIZE),
    ("HEAD", {}, 200, (), SIZE),
    ("GET", {"range": "bytes=0-9"}, 206, (ByteRange(0, 9),), 10),
    ("GET", {"range": "bytes=990-"}, 206, (ByteRange(990, 999),), 10),
    ("GET", {"range": "bytes=-1"}, 206, (ByteRange(999, 999),), 1),
    ("GET", {"range": "bytes=0-999999"}, 206, (ByteRange(0, 999),), SIZE),
    ("HEAD", {"range": "bytes=0-9"}, 200, (), SIZE),  # HEAD never gets a range
    ("GET", {"range": "bytes=9-0"}, 200, WHOLE, SIZE),  # invalid: ignored
    ("GET", {"range": "lines=0-9"}, 200, WHOLE, SIZE),  # another unit: ignored
    (
        "GET",
        {
            "range": ",".join(
                ["bytes=0-0"] + [f"{i * 10}-{i * 10}" for i in range(1, MAX_RANGES + 2)]
            )
        },
        200,
        WHOLE,
        SIZE,
    ),  # over the cap: the whole file once
    ("GET", {"range": "bytes=0-9,5-20"}, 206, (ByteRange(0, 20),), 21),  # coalesced
    # If-Range: a strongly matching ETag or the exact date lets the range through
    ("GET", {"range": "bytes=0-9", "if-range": ETAG}, 206, (ByteRange(0, 9),), 10),
    ("GET", {"range": "bytes=0-9", "if-range": '"other"'}, 200, WHOLE, SIZE),
    ("GET", {"range": "bytes=0-9", "if-range": "W/" + ETAG}, 200, WHOLE, SIZE),
    ("GET", {"range": "bytes=0-9", "if-range": SAME_DATE}, 206, (ByteRange(0, 9),), 10),
    ("GET", {"range": "bytes=0-9", "if-range": EARLIER}, 200, WHOLE, SIZE),
    # preconditions
    ("GET", {"if-none-match": ETAG}, 304, (), None),
    ("HEAD", {"if-none-match": f'"a", {ETAG}'}, 304, (), None),
    ("GET", {"if-none-match": "W/" + ETAG}, 304, (), None),  # weak comparison
    ("GET", {"if-none-match": '"a"'}, 200, WHOLE, SIZE),
    ("GET", {"if-none-match": ETAG, "range": "bytes=0-9"}, 304, (), None),
    ("GET", {"if-modified-since": SAME_DATE}, 304, (), None),
    ("GET", {"if-modified-since": LATER}, 304, (), None),
    ("GET", {"if-modified-since": EARLIER}, 200, WHOLE, SIZE),
    ("GET", {"if-modified-since": "not a date"}, 200, WHOLE, SIZE),
    ("GET", {"if-none-match": '"a"', "if-modified-since": LATER}, 200, WHOLE, SIZE),
    ("GET", {"if-match": ETAG}, 200, WHOLE, SIZE),
    ("GET", {"if-match": "*"}, 200, WHOLE, SIZE),
    ("GET", {"if-match": ETAG, "range": "bytes=0-9"}, 206, (ByteRange(0, 9),), 10),
    ("GET", {"if-unmodified-since": LATER}, 200, WHOLE, SIZE),
    ("POST", {"if-none-match": ETAG}, 412, (), None),
]


@pytest.mark.parametrize(("method", "request_fields", "status", "ranges", "length"), TABLE)
def test_table(
    method: str,
    request_fields: dict[str, str],
    status: int,
    ranges: tuple[ByteRange, ...],
    length: int | None,
) -> None:
    plan = plan_file(method, request_fields, SIZE, REP)
    assert plan.status == status
    if status in (412, 416):
        return  # error pages: their own test below
    assert tuple(p for p in plan.parts if isinstance(p, ByteRange)) == ranges
    assert plan.length == length
    assert plan.whole == (status == 200 and method != "HEAD")
    if plan.parts:
        assert len(body_of(plan)) == plan.length


@pytest.mark.parametrize(
    ("method", "request_fields", "status"),
    [
        ("GET", {"if-match": '"a"'}, 412),
        ("GET", {"if-match": "W/" + ETAG}, 412),  # If-Match compares strongly
        ("GET", {"if-unmodified-since": EARLIER}, 412),
        ("GET", {"if-match": '"a"', "range": "bytes=0-9"}, 412),  # 412 beats the range
        ("HEAD", {"if-match": '"a"'}, 412),
        ("GET", {"range": "bytes=1000-"}, 416),
        ("GET", {"range": "bytes=-0"}, 416),
        ("POST", {"if-none-match": ETAG}, 412),
    ],
)
def test_error_pages(method: str, request_fields: dict[str, str], status: int) -> None:
    plan = plan_file(method, request_fields, SIZE, REP)
    assert plan.status == status
    assert plan.fields.startswith(HTML)
    assert plan.file_bytes == 0 and not plan.whole
    page = headers.simple_body(status)
    assert plan.length == len(page)
    assert plan.parts == (() if method == "HEAD" else (page,))
    assert (b"Content-Range: bytes */1000\r\n" in plan.fields) == (status == 416)


def test_304_repeats_the_validators_only() -> None:
    plan = plan_file("GET", {"if-none-match": ETAG}, SIZE, REP)
    assert plan.fields == REP.not_modified
    assert b"ETag: " + ETAG.encode() in plan.fields and b"Content-Type" not in plan.fields


def test_single_range_fields() -> None:
    plan = plan_file("GET", {"range": "bytes=10-19"}, SIZE, REP)
    assert plan.fields == REP.fields + b"Content-Range: bytes 10-19/1000\r\n"
    assert body_of(plan) == DATA[10:20]


def test_empty_file() -> None:
    assert plan_file("GET", {}, 0, REP) == Plan(200, REP.fields, 0)
    assert plan_file("GET", {"range": "bytes=0-0"}, 0, REP).status == 416


def test_multipart_parses_back_to_the_ranges() -> None:
    plan = plan_file("GET", {"range": "bytes=0-9, 500-599, -5"}, SIZE, REP, boundary="BOUND")
    assert plan.status == 206 and not plan.whole
    assert plan.fields.startswith(b"Content-Type: multipart/byteranges; boundary=BOUND\r\n")
    assert b"text/plain" not in plan.fields  # the type is inside each part
    assert b"ETag: " in plan.fields and b"Accept-Ranges: bytes" in plan.fields
    body = body_of(plan)
    assert len(body) == plan.length
    assert plan.file_bytes == 10 + 100 + 5
    msg = email.parser.BytesParser().parsebytes(
        b"Content-Type: multipart/byteranges; boundary=BOUND\r\n\r\n" + body
    )
    parts = msg.get_payload()
    assert isinstance(parts, list)
    got = []
    for part in parts:
        assert isinstance(part, email.message.Message)
        got.append((part["Content-Range"], part["Content-Type"], part.get_payload(decode=True)))
    assert got == [
        ("bytes 0-9/1000", "text/plain", DATA[0:10]),
        ("bytes 500-599/1000", "text/plain", DATA[500:600]),
        ("bytes 995-999/1000", "text/plain", DATA[995:1000]),
    ]


def test_a_fresh_boundary_per_multipart_plan() -> None:
    a = plan_file("GET", {"range": "bytes=0-0,500-500"}, SIZE, REP)
    b = plan_file("GET", {"range": "bytes=0-0,500-500"}, SIZE, REP)
    assert a.fields != b.fields


def test_a_single_range_draws_no_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The random-bytes syscall is for multipart answers only (it was paid per range request)."""
    from zcopy.serve import multipart

    def refuse() -> str:
        raise AssertionError("a boundary was drawn")

    monkeypatch.setattr(multipart, "new_boundary", refuse)
    assert plan_file("GET", {"range": "bytes=5-9"}, SIZE, REP).status == 206
    assert plan_file("GET", {"range": "bytes=0-0,0-3"}, SIZE, REP).parts == (ByteRange(0, 3),)
    with pytest.raises(AssertionError, match="boundary was drawn"):
        plan_file("GET", {"range": "bytes=0-0,500-500"}, SIZE, REP)


def test_multipart_is_costed_with_the_boundary_it_is_sent_with() -> None:
    """The stand-in used for costing is as long as a drawn boundary: the same amplification cut."""
    from zcopy.serve import multipart

    assert len(multipart.SAME_LENGTH) == len(multipart.new_boundary())
    # Two 1-byte parts cost more than a 150-byte file only through their framing.
    for size in range(100, 400):
        plan = plan_file("GET", {"range": f"bytes=0-0,{size - 1}-{size - 1}"}, size, REP)
        drawn = plan_file(
            "GET", {"range": f"bytes=0-0,{size - 1}-{size - 1}"}, size, REP, boundary="b" * 24
        )
        assert plan.status == drawn.status


def test_files_meta_is_a_description(tmp_path: Path) -> None:
    """The static server passes its cached ``files.Meta``; the same plan comes out."""
    f = tmp_path / "a.css"
    f.write_bytes(DATA)
    st_ = os.stat(f)
    meta = MetaCache().get(str(f), st_, "", 0.0, sidecars=False)
    plan = plan_file("GET", {"range": "bytes=1-2"}, st_.st_size, meta)
    assert plan.fields.startswith(b"Content-Type: text/css")
    assert plan.parts == (ByteRange(1, 2),)
    assert plan_file("GET", {"if-none-match": meta.etag}, st_.st_size, meta).status == 304


def test_error_page_head_has_no_parts() -> None:
    assert error_page("HEAD", 404).parts == ()
    assert error_page("GET", 404).parts == (headers.simple_body(404),)


specs = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 1200), st.integers(0, 1200)).map(lambda t: f"{min(t)}-{max(t)}"),
        st.integers(0, 1200).map(lambda a: f"{a}-"),
        st.integers(0, 1200).map(lambda n: f"-{n}"),
    ),
    min_size=1,
    max_size=40,
)


@given(specs, st.integers(0, 1100))
def test_any_range_header_gives_a_consistent_plan(items: list[str], size: int) -> None:
    data = DATA[:size] if size <= SIZE else DATA + bytes(size - SIZE)
    plan = plan_file("GET", {"range": "bytes=" + ",".join(items)}, size, REP, boundary="B")
    assert plan.status in (200, 206, 416)
    assert plan.file_bytes <= size  # a range request never costs more than the whole file
    for p in plan.parts:
        if isinstance(p, ByteRange):
            assert 0 <= p.first <= p.last < size
    if plan.status != 416:
        assert len(body_of(plan, data)) == plan.length
    if plan.status == 200:
        assert plan.length == size


class Spy(dict[str, str]):
    """A request mapping that records which fields the planner asks about."""

    asked: set[str]

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields)
        self.asked = set()

    def get(self, key: str, default: object = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        assert isinstance(key, str)
        self.asked.add(key)
        return super().__contains__(key)


def test_the_planner_reads_only_the_fields_it_declares() -> None:
    asked: set[str] = set()
    for method, fields, *_ in TABLE:
        spy = Spy(fields)
        plan_file(method, spy, SIZE, REP)
        asked |= spy.asked
    assert asked == set(FIELDS)
