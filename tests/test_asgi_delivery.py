"""Which ASGI messages carry a planned response, for each set of server extensions.

Pure protocol, checked with the in-memory server of ``asgi_fake``: zerocopysend
per file part when offered, pathsend only for a whole file, a read loop otherwise.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from asgi_fake import BOTH, run_app
from hypothesis import given, settings
from hypothesis import strategies as st

from zcopy.asgi import Delivery, FileResponse, FileShrank
from zcopy.asgi.delivery import CHUNK, choose, deliver, read_chunk
from zcopy.asgi.opened import FILES
from zcopy.asgi.types import PATHSEND, ZEROCOPYSEND, Message
from zcopy.serve.plan import Plan
from zcopy.serve.ranges import ByteRange

SIZE = CHUNK + 50_000  # more than one read-loop chunk
START = "http.response.start"
BODY = "http.response.body"


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("asgi") / "blob.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    return path, data


NONE: dict[str, Any] = {}
PATH_ONLY: dict[str, Any] = {PATHSEND: {}}
ZC_ONLY: dict[str, Any] = {ZEROCOPYSEND: {}}
MULTI = "bytes=0-9,200000-200009"

# (extensions, request fields, expected message kinds, expected road)
TABLE: list[tuple[dict[str, Any], dict[str, str], list[str], Delivery]] = [
    (BOTH, {}, [START, ZEROCOPYSEND], Delivery.ZEROCOPYSEND),
    (ZC_ONLY, {}, [START, ZEROCOPYSEND], Delivery.ZEROCOPYSEND),
    (PATH_ONLY, {}, [START, PATHSEND], Delivery.PATHSEND),
    (NONE, {}, [START, BODY + "+", BODY], Delivery.READ_LOOP_NO_EXTENSION),
    (BOTH, {"range": "bytes=5-"}, [START, ZEROCOPYSEND], Delivery.ZEROCOPYSEND),
    (PATH_ONLY, {"range": "bytes=5-9"}, [START, BODY], Delivery.READ_LOOP_RANGE),
    (NONE, {"range": "bytes=-3"}, [START, BODY], Delivery.READ_LOOP_NO_EXTENSION),
    (
        BOTH,
        {"range": MULTI},
        [START, BODY + "+", ZEROCOPYSEND + "+", BODY + "+", ZEROCOPYSEND + "+", BODY],
        Delivery.ZEROCOPYSEND,
    ),
    (PATH_ONLY, {"range": MULTI}, [START] + [BODY + "+"] * 4 + [BODY], Delivery.READ_LOOP_RANGE),
    (BOTH, {"if-none-match": "*"}, [START, BODY], Delivery.NO_BODY),
    (BOTH, {"if-match": '"nope"'}, [START, BODY], Delivery.MEMORY),
    (BOTH, {"range": f"bytes={SIZE}-"}, [START, BODY], Delivery.MEMORY),
]


@pytest.mark.parametrize(("extensions", "fields", "kinds", "road"), TABLE)
def test_messages_per_extension(
    blob: tuple[Path, bytes],
    extensions: dict[str, Any],
    fields: dict[str, str],
    kinds: list[str],
    road: Delivery,
) -> None:
    path, data = blob
    response = FileResponse(path)
    got = run_app(response, headers=fields, extensions=extensions)
    assert got.kinds == kinds
    assert response.delivery is road
    if got.status == 200:
        assert got.body == data
    elif got.status == 206 and "," not in fields["range"]:
        span = got.headers["content-range"].split()[1].split("/")[0]
        first, last = (int(x) for x in span.split("-"))
        assert got.body == data[first : last + 1]
    assert int(got.headers.get("content-length", len(got.body))) == len(got.body)


def test_zerocopysend_parts_name_offsets_and_counts(blob: tuple[Path, bytes]) -> None:
    path, _ = blob
    got = run_app(FileResponse(path), headers={"range": MULTI}, extensions=BOTH)
    sends = [m for m in got.messages if m["type"] == ZEROCOPYSEND]
    assert [(m["offset"], m["count"]) for m in sends] == [(0, 10), (200000, 10)]
    assert sends[0]["file"] is sends[1]["file"]  # one open file for every part
    again = run_app(FileResponse(path), headers={"range": MULTI}, extensions=BOTH)
    kept = [m["file"] for m in again.messages if m["type"] == ZEROCOPYSEND]
    assert kept[0] is sends[0]["file"] and not kept[0].closed  # kept for the next request
    FILES.clear()
    assert kept[0].closed  # and closed once the cache lets go of it (no response holds it)


def test_head_sends_no_file_whatever_is_offered(blob: tuple[Path, bytes]) -> None:
    path, _ = blob
    for ext in (NONE, PATH_ONLY, ZC_ONLY, BOTH):
        got = run_app(FileResponse(path), method="HEAD", extensions=ext)
        assert got.kinds == [START, BODY]
        assert got.headers["content-length"] == str(SIZE) and got.body == b""


def test_empty_file_sends_no_file_message(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    got = run_app(FileResponse(empty), extensions=BOTH)
    assert got.kinds == [START, BODY] and got.headers["content-length"] == "0"


def test_choose_ignores_unrelated_extensions() -> None:
    whole = Plan(200, b"", 1, (ByteRange(0, 0),), whole=True)
    assert choose({"http.response.trailers": {}}, whole) is Delivery.READ_LOOP_NO_EXTENSION


def test_a_shrinking_file_raises_after_the_start_never_pads(tmp_path: Path) -> None:
    """The plan says 1000 bytes; the file has 600: the loop must fail, not invent bytes."""
    f = tmp_path / "short"
    f.write_bytes(b"x" * 600)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        await asyncio.sleep(3600)
        return {}

    plan = Plan(200, b"", 1000, (ByteRange(0, 999),), whole=True)

    async def go() -> None:
        with open(f, "rb", buffering=0) as file:
            await deliver({"type": "http"}, receive, send, plan, file, str(f))

    with pytest.raises(FileShrank, match="600"):
        asyncio.run(go())
    assert sent[0]["type"] == START
    assert sum(len(m.get("body", b"")) for m in sent) == 600
    assert all(m.get("more_body") for m in sent[1:])  # the body was never declared complete


def _loop_with_disconnect(path: Path, spec_version: str) -> list[Message]:
    """Run a read loop whose client leaves after the second body chunk."""
    sent: list[Message] = []
    calls = 0
    left = asyncio.Event()

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)  # like uvicorn's send to a gone client: returns, never yields
        if len(sent) == 3:  # the head and two chunks
            left.set()

    scope = {
        "type": "http",
        "method": "GET",
        "headers": [],
        "extensions": {},
        "asgi": {"version": "3.0", "spec_version": spec_version},
    }
    asyncio.run(asyncio.wait_for(FileResponse(path)(scope, receive, send), 30))
    return sent


def test_read_loop_stops_reading_when_the_client_leaves(tmp_path: Path) -> None:
    """Spec < 2.4 servers (uvicorn) drop sends to a gone client silently: watch for it."""
    big = tmp_path / "big"
    big.write_bytes(os.urandom(CHUNK * 20))
    sent = _loop_with_disconnect(big, "2.3")
    bodies = [m for m in sent if m["type"] == BODY]
    assert len(bodies) == 2, len(bodies)
    # From 2.4 on a server raises from send instead; the in-memory one never does, so all go.
    assert len([m for m in _loop_with_disconnect(big, "2.4") if m["type"] == BODY]) == 20


def test_read_chunk_cold_and_cached(tmp_path: Path) -> None:
    """A page-cache miss goes to a thread; the bytes are the same either way."""
    f = tmp_path / "cold"
    data = os.urandom(3 * CHUNK)
    f.write_bytes(data)
    fd = os.open(f, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # evict (where the fs allows)
        assert asyncio.run(read_chunk(fd, CHUNK, CHUNK)) == data[CHUNK : 2 * CHUNK]
        assert asyncio.run(read_chunk(fd, CHUNK, CHUNK)) == data[CHUNK : 2 * CHUNK]  # cached
        assert asyncio.run(read_chunk(fd, len(data) - 5, CHUNK)) == data[-5:]  # short at EOF
        assert asyncio.run(read_chunk(fd, len(data), CHUNK)) == b""
    finally:
        os.close(fd)


range_items = st.lists(
    st.one_of(
        st.tuples(st.integers(0, SIZE + 10), st.integers(0, SIZE + 10)).map(
            lambda t: f"{min(t)}-{max(t)}"
        ),
        st.integers(0, SIZE + 10).map(lambda a: f"{a}-"),
        st.integers(0, SIZE + 10).map(lambda n: f"-{n}"),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(items=range_items)
def test_every_road_sends_the_same_response(blob: tuple[Path, bytes], items: list[str]) -> None:
    """zerocopysend, pathsend-only and the read loop: one plan, byte-identical bodies."""
    path, _ = blob
    fields = {"range": "bytes=" + ",".join(items)}
    answers = []
    for extensions in (BOTH, PATH_ONLY, NONE):
        got = run_app(FileResponse(path), headers=fields, extensions=extensions)
        _, _, boundary = got.headers.get("content-type", "").partition("boundary=")
        body = got.body.replace(boundary.encode(), b"B") if boundary else got.body
        assert int(got.headers["content-length"]) == len(got.body)
        answers.append((got.status, got.headers.get("content-range"), body))
    assert answers[0] == answers[1] == answers[2]
