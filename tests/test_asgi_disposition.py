"""``Content-Disposition`` for download names: round trips, and no header injection."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zcopy.asgi.disposition import content_disposition

_FIELD_VALUE = re.compile(r"[\x20-\x7e]*")  # what may appear in the header, as sent


def parse(value: str) -> tuple[str, str, str | None]:
    """(kind, filename, filename*) the way a browser reads them."""
    kind, _, rest = value.partition("; ")
    m = re.match(r'filename="((?:[^"\\]|\\.)*)"(?:; filename\*=UTF-8\'\'(\S+))?$', rest)
    assert m is not None, value
    plain = re.sub(r"\\(.)", r"\1", m[1])
    star = unquote(m[2], errors="strict") if m[2] else None
    return kind, plain, star


@pytest.mark.parametrize(
    ("name", "plain", "star"),
    [
        ("report.pdf", "report.pdf", None),
        ("a b.txt", "a b.txt", None),
        ('q"uote\\d.txt', 'q"uote\\d.txt', None),
        ("résumé.pdf", "r_sum_.pdf", "résumé.pdf"),
        ("日本.txt", "__.txt", "日本.txt"),
        ("x\r\nSet-Cookie: a=b", "x__Set-Cookie: a=b", "x\r\nSet-Cookie: a=b"),
    ],
)
def test_examples(name: str, plain: str, star: str | None) -> None:
    value = content_disposition(name, "inline")
    assert _FIELD_VALUE.fullmatch(value)
    assert parse(value) == ("inline", plain, star)


@given(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40))
def test_any_name_round_trips_and_stays_one_header_line(name: str) -> None:
    value = content_disposition(name)
    assert _FIELD_VALUE.fullmatch(value), value  # no CR, LF, NUL or non-ASCII on the wire
    kind, plain, star = parse(value)
    assert kind == "attachment"
    assert (star if star is not None else plain) == name
