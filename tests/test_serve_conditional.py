"""RFC 9110 §13 preconditions, table-driven: precedence, comparison functions, If-Range."""

from __future__ import annotations

import pytest

from zcopy.serve.conditional import (
    Validators,
    evaluate,
    http_date,
    if_range_allows,
    parse_http_date,
    strong_match,
    weak_match,
)

MTIME = 1_700_000_000
V = Validators('"abc"', MTIME)
SAME = http_date(MTIME)
BEFORE = http_date(MTIME - 10)
AFTER = http_date(MTIME + 10)

CASES = [
    # (method, if_match, if_none_match, if_modified_since, if_unmodified_since, expected)
    ("GET", None, None, None, None, 200),
    ("GET", '"abc"', None, None, None, 200),
    ("GET", '"x", "abc"', None, None, None, 200),
    ("GET", "*", None, None, None, 200),
    ("GET", '"x"', None, None, None, 412),
    ("GET", 'W/"abc"', None, None, None, 412),  # If-Match is a strong comparison
    ("GET", None, None, None, BEFORE, 412),
    ("GET", None, None, None, SAME, 200),
    ("GET", None, None, None, AFTER, 200),
    ("GET", None, None, None, "garbage", 200),  # invalid date: ignored
    ("GET", '"abc"', None, None, BEFORE, 200),  # If-Match wins over If-Unmodified-Since
    ("GET", None, '"abc"', None, None, 304),
    ("HEAD", None, '"abc"', None, None, 304),
    ("GET", None, 'W/"abc"', None, None, 304),  # If-None-Match is a weak comparison
    ("GET", None, "*", None, None, 304),
    ("GET", None, '"x"', None, None, 200),
    ("GET", None, None, SAME, None, 304),
    ("GET", None, None, AFTER, None, 304),
    ("GET", None, None, BEFORE, None, 200),
    ("GET", None, None, "garbage", None, 200),
    ("GET", None, '"x"', SAME, None, 200),  # If-None-Match wins over If-Modified-Since
    ("GET", None, '"abc"', BEFORE, None, 304),
    ("GET", '"x"', '"abc"', None, None, 412),  # 412 checks come before 304 checks
    ("GET", None, '"abc"', None, BEFORE, 412),
    ("POST", None, '"abc"', None, None, 412),  # not GET/HEAD: a match is a failure
    ("POST", None, None, SAME, None, 200),  # If-Modified-Since is for GET/HEAD only
]


@pytest.mark.parametrize(("method", "im", "inm", "ims", "ius", "expected"), CASES)
def test_evaluate(
    method: str, im: str | None, inm: str | None, ims: str | None, ius: str | None, expected: int
) -> None:
    got = evaluate(
        method, V, if_match=im, if_none_match=inm, if_modified_since=ims, if_unmodified_since=ius
    )
    assert got == expected


IF_RANGE = [
    (None, True),
    ('"abc"', True),
    ('"abd"', False),
    ('W/"abc"', False),  # a weak tag can never validate a range
    (SAME, True),
    (BEFORE, False),
    (AFTER, False),  # only an exact Last-Modified match counts
    ("garbage", False),
]


@pytest.mark.parametrize(("value", "expected"), IF_RANGE)
def test_if_range(value: str | None, expected: bool) -> None:
    assert if_range_allows(value, V) is expected


def test_if_range_never_matches_a_weak_etag() -> None:
    assert not if_range_allows('W/"abc"', Validators('W/"abc"', MTIME))


@pytest.mark.parametrize(
    ("header", "strong", "weak"),
    [
        ('"abc"', True, True),
        ('W/"abc"', False, True),
        ('"a", "abc" , "b"', True, True),
        ('"ab"', False, False),
        ("*", True, True),
        ("", False, False),
    ],
)
def test_comparisons(header: str, strong: bool, weak: bool) -> None:
    assert strong_match(header, '"abc"') is strong
    assert weak_match(header, '"abc"') is weak


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784111777),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", 784111777),  # RFC 850
        ("Sun Nov  6 08:49:37 1994", 784111777),  # asctime
        ("not a date", None),
        ("", None),
    ],
)
def test_parse_http_date(text: str, expected: int | None) -> None:
    assert parse_http_date(text) == expected


def test_http_date_round_trip() -> None:
    assert parse_http_date(http_date(MTIME)) == MTIME


@pytest.mark.parametrize(
    ("header", "strong", "weak"),
    [
        ('"a,b"', True, True),  # etagc allows a comma inside the quotes (RFC 9110 §8.8.3)
        ('"x", W/"a,b"', False, True),
        ('"a', False, False),  # a piece of the tag is not the tag
        ('b"', False, False),
        ('"a,b" junk', False, False),  # not a list element of its own
        (',, "a,b" ,', True, True),  # empty elements are allowed (§5.6.1)
    ],
)
def test_comparisons_of_a_tag_holding_a_comma(header: str, strong: bool, weak: bool) -> None:
    assert strong_match(header, '"a,b"') is strong
    assert weak_match(header, '"a,b"') is weak
