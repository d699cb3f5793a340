"""The ASGI response head planner, sans-IO: status and fields in, head bytes and framing out."""

from __future__ import annotations

import pytest

from zcopy.serve.asgi import response
from zcopy.serve.asgi.response import BadResponse, Framing, chunk, start

DATE = b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nServer: zcopy/test\r\n"


def plan(
    status: object = 200,
    fields: list[tuple[bytes, bytes]] | None = None,
    *,
    head_request: bool = False,
    http10: bool = False,
    keep_alive: bool = True,
) -> tuple[bytes, Framing, int | None, bool]:
    h = start(
        status, fields or [], head_request=head_request, http10=http10, keep_alive=keep_alive,
        date_block=DATE,
    )
    return h.data, h.framing, h.length, h.keep_alive


@pytest.mark.parametrize(
    ("kwargs", "framing", "keep_alive", "has", "lacks"),
    [
        ({"fields": [(b"content-length", b"5")]}, Framing.LENGTH, True,
         b"content-length: 5\r\n", b"Transfer-Encoding"),
        ({}, Framing.CHUNKED, True, b"Transfer-Encoding: chunked\r\n", b"Connection"),
        ({"http10": True}, Framing.UNTIL_CLOSE, False, b"Connection: close\r\n", b"chunked"),
        ({"http10": True, "fields": [(b"content-length", b"1")]}, Framing.LENGTH, True,
         b"Connection: keep-alive\r\n", b"chunked"),
        ({"head_request": True}, Framing.NONE, True, b"Date:", b"chunked"),
        ({"head_request": True, "fields": [(b"content-length", b"9")]}, Framing.NONE, True,
         b"content-length: 9\r\n", b"chunked"),
        ({"status": 204}, Framing.NONE, True, b"204 No Content", b"chunked"),
        ({"status": 304, "fields": [(b"etag", b'"x"')]}, Framing.NONE, True, b'etag: "x"',
         b"chunked"),
        ({"keep_alive": False}, Framing.CHUNKED, False, b"Connection: close\r\n", b"keep-alive"),
        # the app's hop-by-hop fields are the server's business: dropped, close honoured
        ({"fields": [(b"Connection", b"close"), (b"Transfer-Encoding", b"gzip")]},
         Framing.CHUNKED, False, b"Connection: close\r\n", b"gzip"),
        # an app's own Date/Server replace the server's
        ({"fields": [(b"server", b"mine")]}, Framing.CHUNKED, True, b"server: mine\r\n",
         b"zcopy/test"),
        ({"status": 299}, Framing.CHUNKED, True, b"HTTP/1.1 299 \r\n", b"Connection"),
    ],
)
def test_framing_table(
    kwargs: dict[str, object], framing: Framing, keep_alive: bool, has: bytes, lacks: bytes
) -> None:
    data, got_framing, _, got_keep = plan(**kwargs)  # type: ignore[arg-type]
    assert (got_framing, got_keep) == (framing, keep_alive)
    assert has in data and lacks not in data
    assert data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1


@pytest.mark.parametrize(
    ("status", "fields", "message"),
    [
        (100, [], "200 to 599"),
        (True, [], "200 to 599"),
        ("200", [], "200 to 599"),
        (200, [(b"x-a", b"1\r\nSet-Cookie: a=b")], "corrupt"),
        (200, [(b"x-a", b"nul\x00")], "corrupt"),
        (200, [(b"bad name", b"1")], "corrupt"),
        (200, [(b"x-a:", b"1")], "corrupt"),
        (200, [("x-a", "1")], "must be bytes"),
        (200, [(b"x-a",)], "pair"),
        (200, [(b"content-length", b"-1")], "not a number"),
        (200, [(b"content-length", b"1"), (b"content-length", b"2")], "two different"),
    ],
)
def test_bad_responses_are_refused(status: object, fields: list[tuple[bytes, bytes]],
                                   message: str) -> None:
    with pytest.raises(BadResponse, match=message):
        plan(status, fields)


def test_repeated_equal_content_length_is_fine() -> None:
    _, framing, length, _ = plan(200, [(b"content-length", b"3"), (b"Content-Length", b" 3")])
    assert (framing, length) == (Framing.LENGTH, 3)


def test_chunk_encoding() -> None:
    assert chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"


def test_checked_fields_are_remembered_only_for_plain_bytes() -> None:
    """The cache never lets a value skip a check its own type would fail."""
    fields = [(b"x-a", b"1")]
    assert response.checked(200, fields) == response.checked(200, [(b"x-a", b"1")])
    assert (b"x-a", b"1") in response._FIELDS
    # A bytes-equal memoryview is no bytes: checked itself, and refused as before.
    with pytest.raises(BadResponse):
        plan(200, [(memoryview(b"x-a"), b"1")])  # type: ignore[list-item]
    with pytest.raises(BadResponse):
        plan(200.0, fields)  # equal to 200 as a key, but not a status
    with pytest.raises(BadResponse):
        plan(True, fields)
    from http import HTTPStatus

    assert plan(HTTPStatus.OK, fields)[0].startswith(b"HTTP/1.1 200 OK\r\nx-a: 1\r\n")


def test_checked_heads_cache_is_bounded() -> None:
    for n in range(response.CHECKED_MAX * 3):
        start(200, [(b"content-length", b"%d" % n)], head_request=False, http10=False,
              keep_alive=True, date_block=b"")
    assert 0 < len(response._FIELDS) <= response.CHECKED_MAX


def test_a_head_new_in_one_field_checks_that_field() -> None:
    """A ranged answer repeats its file's fields with a new Content-Range each time: the
    remembered fields are reused, and the new one is checked as a field of its own."""
    known = [(b"content-type", b"video/mp4"), (b"etag", b'"1-2"')]
    for first in range(3):
        value = b"bytes %d-9/10" % first
        data = plan(206, [*known, (b"content-range", value), (b"content-length", b"1")])[0]
        assert data.startswith(b"HTTP/1.1 206 Partial Content\r\ncontent-type: video/mp4\r\n")
        assert b"content-range: " + value + b"\r\n" in data
    for bad in (b"bytes 0-1/2\r\nX-Evil: 1", b"bytes 0-1/2\x00"):
        with pytest.raises(BadResponse):
            plan(206, [*known, (b"content-range", bad)])
    with pytest.raises(BadResponse, match="not a number"):
        plan(206, [*known, (b"content-length", b"x1")])
    with pytest.raises(BadResponse, match="two different"):
        plan(206, [*known, (b"content-length", b"1"), (b"content-length", b"2")])


def test_app_connection_close_survives_the_cache() -> None:
    for _ in range(2):  # the second answer comes from the cache
        assert plan(200, [(b"connection", b"close")])[3] is False
        assert plan(200, [(b"content-length", b"0")])[3] is True


def test_a_lookalike_of_a_remembered_field_is_checked_itself() -> None:
    """A field object that claims to equal a remembered one (same hash, ``__eq__`` always
    true) is no exact ``bytes``: it is checked on its own, and this one is refused."""

    class Liar(bytes):
        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash(b"x-a")

    kept = (b"x-a", b"1")
    assert plan(200, [kept])[0] == plan(200, [kept])[0]  # remembered, then known by identity
    with pytest.raises(BadResponse, match="corrupt"):
        plan(200, [(Liar(b"bad name"), b"1")])
    with pytest.raises(BadResponse, match="corrupt"):
        plan(200, [(b"x-a", Liar(b"1\r\nX-Evil: 1"))])


def test_a_value_that_would_add_well_formed_lines_is_refused() -> None:
    """Each line of the head would be well-formed, but one value made two: refused."""
    with pytest.raises(BadResponse, match="corrupt"):
        plan(200, [(b"x-a", b"1\r\nSet-Cookie: a=b"), (b"x-b", b"2")])
    with pytest.raises(BadResponse, match="corrupt"):
        plan(200, [(b"x-a", b"1\r\n\r\nbody")])


def test_the_servers_fields_are_found_in_any_case_and_any_iterable() -> None:
    data, framing, length, keep = plan(
        200, [(b"Content-Length", b" 7 "), (b"DATE", b"x"), (b"x", b"content-length: 9")]
    )
    assert (framing, length, keep) == (Framing.LENGTH, 7, True)
    assert b"DATE: x\r\n" in data and b"Thu, 01 Jan" not in data
    data, _, _, keep = plan(200, [(b"x", b"1"), (b"KEEP-ALIVE", b"timeout=5"),
                                  (b"Connection", b"Close")])
    assert not keep and b"KEEP-ALIVE" not in data and b"x: 1\r\n" in data
    once = start(200, iter([(b"x-a", b"1")]), head_request=False, http10=False,
                 keep_alive=True, date_block=DATE)
    assert once.data.startswith(b"HTTP/1.1 200 OK\r\nx-a: 1\r\n")
