"""Real Starlette apps that the ASGI server tests run under ``zcopy serve --app``.

(FastAPI, slower to import, is in ``asgi_fastapi``, which mounts it beside these.)

Files come from the directory in ``ZCOPY_TEST_ROOT``; ``ZCOPY_TEST_LIFESPAN``
chooses the lifespan behaviour (``ok``, ``fail``, ``raise``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from zcopy import asgi as zasgi

ROOT = Path(os.environ.get("ZCOPY_TEST_ROOT", "."))
EVENTS = ROOT / "events.log"  # what the app saw, for tests that look from outside


def note(line: str) -> None:
    """Append one line to the events log (an app's side of a test)."""
    with open(EVENTS, "a") as f:
        f.write(line + "\n")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    mode = os.environ.get("ZCOPY_TEST_LIFESPAN", "ok")
    if mode == "raise":
        raise RuntimeError("the database is down")
    note("startup")
    yield {"greeting": "hello from lifespan"}
    note("shutdown")


async def file(request: Request) -> Response:
    return FileResponse(ROOT / request.path_params["name"])


async def plain(request: Request) -> Response:
    return PlainTextResponse("hello, world")


async def state(request: Request) -> Response:
    return PlainTextResponse(request.state.greeting)


async def frozen(request: Request) -> Response:
    """How many objects the collector no longer looks at (the server froze them)."""
    import gc

    return PlainTextResponse(str(gc.get_freeze_count()))


async def scope_view(request: Request) -> Response:
    s = request.scope
    fields = [
        f"{k}={s[k]!r}"
        for k in ("http_version", "method", "scheme", "path", "raw_path", "query_string",
                  "root_path", "client", "server")
    ]
    fields.append(f"asgi={s['asgi']!r}")
    fields.append(f"extensions={sorted(s['extensions'])!r}")
    fields.append(f"headers={s['headers']!r}")
    return PlainTextResponse("\n".join(fields))


async def echo(request: Request) -> Response:
    sizes = []
    data = bytearray()
    async for piece in request.stream():
        sizes.append(len(piece))
        data += piece
    return Response(bytes(data), headers={"x-pieces": str(len([s for s in sizes if s]))})


async def stream(request: Request) -> Response:
    n = int(request.query_params.get("n", "5"))

    async def gen() -> AsyncIterator[bytes]:
        for i in range(n):
            yield f"part {i}\n".encode()
            await asyncio.sleep(0)

    return StreamingResponse(gen(), media_type="text/plain")


async def big_stream(request: Request) -> Response:
    """64 MiB from memory: a client that stops reading must hold ``await send`` back."""

    async def gen() -> AsyncIterator[bytes]:
        block = b"x" * (1 << 20)
        for i in range(64):
            note(f"sent {i}")
            yield block

    return StreamingResponse(gen(), media_type="application/octet-stream")


async def boom(request: Request) -> Response:
    raise RuntimeError("boom before the response")


async def boom_after(request: Request) -> Response:
    """A complete response, then a background task that raises (the app raises after it)."""

    def fail() -> None:
        raise RuntimeError("boom after the response was complete")

    return PlainTextResponse("done", background=BackgroundTask(fail))


async def boom_midway(request: Request) -> Response:
    async def gen() -> AsyncIterator[bytes]:
        yield b"first part\n"
        await asyncio.sleep(0.05)
        raise RuntimeError("boom after the response started")

    return StreamingResponse(gen(), media_type="text/plain")


async def slow_upload(request: Request) -> Response:
    """Reads the body, noting each piece: a client that disconnects mid-body shows up here."""
    total = 0
    try:
        async for piece in request.stream():
            total += len(piece)
    except Exception as exc:  # starlette's ClientDisconnect
        note(f"upload ended: {type(exc).__name__} after {total}")
        raise
    note(f"upload complete: {total}")
    return PlainTextResponse(str(total))


async def path_view(request: Request) -> Response:
    """The decoded path, written back: an app that encodes what the server decoded."""
    return PlainTextResponse(request.url.path)


routes = [
    Route("/file/{name:path}", file, methods=["GET", "HEAD"]),
    Route("/path/{rest:path}", path_view),
    Route("/plain", plain),
    Route("/state", state),
    Route("/frozen", frozen),
    Route("/scope", scope_view, methods=["GET", "POST"]),
    Route("/echo", echo, methods=["POST", "PUT"]),
    Route("/stream", stream),
    Route("/big-stream", big_stream),
    Route("/boom", boom),
    Route("/boom-midway", boom_midway),
    Route("/boom-after", boom_after),
    Route("/upload", slow_upload, methods=["POST"]),
    Mount("/static", StaticFiles(directory=ROOT)),
]



async def zfile(request: Request) -> Any:
    """zcopy's own FileResponse (zcopy.asgi): ranges and multipart by zerocopysend."""
    return zasgi.FileResponse(ROOT / request.path_params["name"])


routes.insert(0, Route("/zfile/{name:path}", zfile, methods=["GET", "HEAD"]))

app = Starlette(routes=routes, lifespan=lifespan)

def make_app() -> Starlette:
    """For ``--factory``."""
    return Starlette(routes=[Route("/plain", plain)])


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app for the corners frameworks do not reach (zerocopysend, odd messages)."""
    if scope["type"] != "http":
        return
    path = scope["path"][len(scope["root_path"]):]  # the spec: path includes root_path
    if path == "/zerocopy":
        # ?name=F&offset=O&count=C&more: each given piece becomes one zerocopysend message
        q = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
        with open(ROOT / q["name"], "rb") as f:
            headers = [(b"content-type", b"application/octet-stream")]
            if "length" in q:
                headers.append((b"content-length", q["length"].encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            pieces = [tuple(int(x) for x in p.split(":")) for p in q["pieces"].split(",")]
            for i, (offset, count) in enumerate(pieces):
                await send({
                    "type": "http.response.zerocopysend",
                    "file": f if i % 2 == 0 else f.fileno(),
                    "offset": offset,
                    "count": count,
                    "more_body": i < len(pieces) - 1,
                })
        return
    if path == "/pathsend":
        # ?name=F&length=N: a head promising N bytes, then the file by path (sized now)
        q = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", q["length"].encode())]})
        await send({"type": "http.response.pathsend", "path": str(ROOT / q["name"])})
        return
    if path == "/two-readers":
        # receive() from two tasks at once, both waiting for the socket: each gets one piece
        async def one() -> int:
            return len((await receive()).get("body", b""))

        counts = await asyncio.wait_for(asyncio.gather(one(), one()), 10)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"%d+%d" % tuple(counts)})
        return
    if path == "/stray-reader":
        # answers at once and leaves a task reading the body it never needed
        asyncio.get_running_loop().create_task(receive())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if path == "/stray-waiter":
        # reads its body, then leaves a task waiting for the disconnect, and answers
        while (await receive()).get("more_body"):
            pass
        asyncio.get_running_loop().create_task(receive())
        await asyncio.sleep(0.05)  # the stray is waiting on the socket now
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if path == "/bad-header":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-evil", b"a\r\nSet-Cookie: pwned=1")]})
        await send({"type": "http.response.body", "body": b"never"})
        return
    if path == "/no-response":
        return
    if path == "/too-long":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"12345"})
        return
    if path == "/wait-disconnect":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting\n", "more_body": True})
        message = await receive()
        while message["type"] == "http.request":
            message = await receive()
        note(f"saw {message['type']}")
        return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"no such raw route"})
