"""``count_bytes`` keeps the fast path and counts right; the middleware traps it avoids.

The traps are shown on the real Starlette classes, under the in-memory server
offering pathsend and zerocopysend (what ``zcopy serve --app`` offers):
``BaseHTTPMiddleware`` fails on zerocopysend, ``GZipMiddleware`` drops it (the
response vanishes), and a hand-written ``send`` wrapper that knows only
``http.response.body`` drops pathsend. ``count_bytes`` in the same place
passes every message and the body arrives whole.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from asgi_fake import BOTH, Exchange, run_app
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse as StarletteFileResponse
from starlette.responses import Response
from starlette.routing import Route

from zcopy.asgi import FileResponse, count_bytes, message_bytes, without_extensions
from zcopy.asgi.types import PATHSEND, ZEROCOPYSEND, ASGIApp, Message, Receive, Scope, Send

ZC_KINDS = ["http.response.start", ZEROCOPYSEND]


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    f = tmp_path / "notes.txt"  # text: a type GZipMiddleware would compress
    f.write_bytes(os.urandom(300_000).hex().encode())
    return f


def unbound(got: Exchange) -> bytes:
    """The body with a multipart boundary (random per response) replaced by a fixed one."""
    _, _, boundary = got.headers.get("content-type", "").partition("boundary=")
    return got.body.replace(boundary.encode(), b"B") if boundary else got.body


def file_app(path: Path, *, starlette_response: bool = False) -> Starlette:
    async def endpoint(request: Request) -> Response:
        if starlette_response:
            return StarletteFileResponse(path)
        return FileResponse(path)

    return Starlette(routes=[Route("/", endpoint)])


@pytest.mark.parametrize(
    ("extensions", "fields", "starlette_response"),
    [
        (BOTH, {}, False),
        (BOTH, {"range": "bytes=10-19"}, False),
        (BOTH, {"range": "bytes=0-9,5000-5009,-3"}, False),
        ({PATHSEND: {}}, {}, False),
        ({PATHSEND: {}}, {}, True),
        ({}, {"range": "bytes=0-9,5000-5009"}, False),
        (BOTH, {}, True),
    ],
)
def test_counts_every_body_byte_and_passes_messages_through(
    text_file: Path,
    extensions: dict[str, object],
    fields: dict[str, str],
    starlette_response: bool,
) -> None:
    counted: list[int] = []
    bare = run_app(
        file_app(text_file, starlette_response=starlette_response),
        headers=fields,
        extensions=extensions,
    )
    wrapped = run_app(
        count_bytes(file_app(text_file, starlette_response=starlette_response), counted.append),
        headers=fields,
        extensions=extensions,
    )
    assert wrapped.kinds == bare.kinds  # the same messages: nothing rebuilt, nothing dropped
    assert unbound(wrapped) == unbound(bare)
    assert sum(counted) == len(wrapped.body) > 0


def test_message_identity_is_kept(text_file: Path) -> None:
    """The very message objects the app sent reach the server (file objects and all)."""
    sent_by_app: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def spy(message: Message) -> None:
            sent_by_app.append(message)
            await send(message)

        await FileResponse(text_file)(scope, receive, spy)

    got = run_app(count_bytes(app, lambda n: None), extensions=BOTH)
    assert [id(m) for m in got.messages] == [id(m) for m in sent_by_app]


def test_message_bytes_reads_the_spec_defaults(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    with open(f, "rb") as file:
        file.seek(30)  # no offset: from the file's position
        assert message_bytes({"type": ZEROCOPYSEND, "file": file}) == 70
        assert message_bytes({"type": ZEROCOPYSEND, "file": file.fileno(), "offset": 90}) == 10
        assert message_bytes({"type": ZEROCOPYSEND, "file": file, "offset": 0, "count": 5}) == 5
        # a count past the end: only what the file has is sent
        assert message_bytes({"type": ZEROCOPYSEND, "file": file, "offset": 95, "count": 50}) == 5
    assert message_bytes({"type": PATHSEND, "path": str(f)}) == 100
    assert message_bytes({"type": PATHSEND, "path": str(tmp_path / "gone")}) == 0
    assert message_bytes({"type": "http.response.trailers"}) == 0


def test_count_is_not_taken_for_a_send_that_failed(text_file: Path) -> None:
    counted: list[int] = []

    async def failing_send(message: Message) -> None:
        if message["type"] != "http.response.start":
            raise OSError("client gone")

    async def receive() -> Message:
        return {"type": "http.request"}

    scope = {"type": "http", "method": "GET", "headers": [], "extensions": BOTH}
    app = count_bytes(file_app(text_file), counted.append)

    async def go() -> None:
        await app(scope, receive, failing_send)

    with pytest.raises(OSError):
        asyncio.run(go())
    assert counted == []


def test_the_documented_middleware_example(text_file: Path) -> None:
    """docs/asgi.md's metrics middleware, run as printed: messages kept, bytes counted."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "asgi.md").read_text()
    after = doc.split("<!-- tested: tests/test_asgi_counting.py runs this block -->", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/asgi.md", "exec"), namespace)
    for fields in ({}, {"range": "bytes=0-9,100-109"}):
        middleware = namespace["BytesSent"](file_app(text_file))
        got = run_app(middleware, headers=fields, extensions=BOTH)
        assert any(kind.startswith(ZEROCOPYSEND) for kind in got.kinds)
        assert middleware.totals == {"/": len(got.body)}


# -- the traps ---------------------------------------------------------------------------


class Passthrough(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


def test_trap_base_http_middleware_fails_on_zerocopysend(text_file: Path) -> None:
    app = file_app(text_file)
    app.user_middleware = [Middleware(Passthrough)]
    with pytest.raises(AssertionError, match="Unexpected message"):
        run_app(app, extensions=BOTH)
    # Starlette's own FileResponse sends pathsend, which BaseHTTPMiddleware now forwards
    app = file_app(text_file, starlette_response=True)
    app.user_middleware = [Middleware(Passthrough)]
    assert run_app(app, extensions={PATHSEND: {}}).kinds == ["http.response.start", PATHSEND]


def test_trap_gzip_middleware_drops_zerocopysend(text_file: Path) -> None:
    app = GZipMiddleware(file_app(text_file))
    got = run_app(app, headers={"accept-encoding": "gzip"}, extensions=BOTH)
    assert got.messages == []  # not even the head: the response vanished


def body_only(app: ASGIApp, on_bytes: list[int]) -> ASGIApp:
    """The trap, written by hand: a ``send`` that understands only head and body."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] == "http.response.body":
                on_bytes.append(len(message.get("body", b"")))
                await send(message)
            # anything else falls on the floor

        await app(scope, receive, counting_send)

    return wrapped


def test_trap_body_only_send_drops_pathsend(text_file: Path) -> None:
    seen: list[int] = []
    got = run_app(
        body_only(file_app(text_file, starlette_response=True), seen), extensions={PATHSEND: {}}
    )
    assert got.kinds == ["http.response.start"] and got.body == b"" and seen == []
    counted: list[int] = []
    got = run_app(
        count_bytes(file_app(text_file, starlette_response=True), counted.append),
        extensions={PATHSEND: {}},
    )
    assert got.body == text_file.read_bytes() and sum(counted) == len(got.body)


def test_without_extensions_rescues_an_app_behind_gzip(text_file: Path) -> None:
    """Hiding zerocopysend from the app behind GZip: whole files keep pathsend, ranges loop."""
    app = GZipMiddleware(without_extensions(file_app(text_file)))
    got = run_app(app, headers={"accept-encoding": "gzip"}, extensions=BOTH)
    assert got.kinds == ["http.response.start", PATHSEND]  # GZip forwards pathsend as is
    assert got.body == text_file.read_bytes()
    got = run_app(app, headers={"range": "bytes=0-9"}, extensions=BOTH)
    assert got.kinds == ["http.response.start", "http.response.body"]
    assert got.body == text_file.read_bytes()[:10]
