"""Careless ASGI apps for ``tests/test_asgi_server_attacks.py``, served by ``zcopy serve --app``.

One bare ASGI callable, ``app``, routes on the path; files come from the directory in
``ZCOPY_TEST_ROOT`` and what the app saw goes to ``events.log`` there.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("ZCOPY_TEST_ROOT", "."))
EVENTS = ROOT / "events.log"

Receive = Any
Send = Any


def note(line: str) -> None:
    """Append one line to the events log (the app's side of a test)."""
    with open(EVENTS, "a") as f:
        f.write(line + "\n")


def query(scope: dict[str, Any]) -> dict[str, str]:
    pairs = scope["query_string"].decode().split("&")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


async def start(send: Send, status: int = 200, length: int | None = None) -> None:
    headers = [(b"content-type", b"application/octet-stream")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def pathsend(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``?name=N``: the file by path, no Content-Length (whatever ``N`` is now)."""
    await start(send)
    await send({"type": "http.response.pathsend", "path": str(ROOT / query(scope)["name"])})


async def buffered_rest(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``?name=N&skip=K``: read K bytes through a buffered file, zerocopysend the rest.

    No ``offset``: the spec says the file's current position, which is K here.
    """
    q = query(scope)
    with open(ROOT / q["name"], "rb") as f:
        f.read(int(q["skip"]))
        await start(send)
        await send({"type": "http.response.zerocopysend", "file": f})


async def upload_slowly(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Read the body piece by piece, pausing after each, then answer its length."""
    total = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            note("upload: disconnect")
            return
        total += len(message.get("body", b""))
        more = message.get("more_body", False)
        note(f"upload: {total}")
        await asyncio.sleep(0.05)
    body = str(total).encode()
    await start(send, length=len(body))
    await send({"type": "http.response.body", "body": body})


async def echo_or_report(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Read the whole body; a disconnect is noted and not answered."""
    data = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            note("echo: disconnect")
            return
        data += message.get("body", b"")
        if not message.get("more_body"):
            break
    await start(send, length=len(data))
    await send({"type": "http.response.body", "body": data})


async def sse(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """An event stream that listens for the disconnect and pings (as sse-starlette does).

    A ping to a client that left raises OSError, which ends the stream.
    """
    await start(send)
    await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
    while True:
        try:
            message = await asyncio.wait_for(receive(), 0.2)
        except TimeoutError:
            await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
            continue
        if message["type"] == "http.disconnect":
            note("sse: disconnect")
            return


async def midway_exit(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``sys.exit()`` in a handler: a careless app, never the server's end."""
    if query(scope).get("when") == "after":
        await start(send)
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
    sys.exit(3)


async def raise_midway(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await start(send)
    await send({"type": "http.response.body", "body": b"first part\n", "more_body": True})
    await asyncio.sleep(0.02)
    raise RuntimeError("boom after the response started")


async def str_body(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """A ``str`` body: an app error found before a byte is written."""
    await start(send, length=None if query(scope).get("chunked") else 5)
    await send({"type": "http.response.body", "body": "hello"})


async def bad_count(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """A zerocopysend with a negative count or offset: refused before a byte is written."""
    q = query(scope)
    with open(ROOT / q["name"], "rb", buffering=0) as f:
        await start(send)
        await send({
            "type": "http.response.zerocopysend", "file": f,
            "offset": int(q.get("offset", "0")), "count": int(q.get("count", "5")),
        })


async def stream_slowly(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``?n=N``: N pieces 50 ms apart, chunked (HTTP/1.1) or until close (HTTP/1.0)."""
    n = int(query(scope).get("n", "20"))
    await start(send)
    for i in range(n):
        await send({"type": "http.response.body", "body": b"piece %d\n" % i, "more_body": True})
        await asyncio.sleep(0.05)
    await send({"type": "http.response.body", "body": b"end\n"})


async def strays(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Leaves three tasks in receive() for a body it never needed, then answers."""
    loop = asyncio.get_running_loop()
    STRAYS.extend(loop.create_task(receive()) for _ in range(3))
    await asyncio.sleep(0.02)  # one waits on the socket, two for their turn
    await start(send, length=2)
    await send({"type": "http.response.body", "body": b"ok"})


STRAYS: list[asyncio.Task[Any]] = []  # referenced, so they are not collected mid-wait


async def ok(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await start(send, length=2)
    await send({"type": "http.response.body", "body": b"ok"})


ROUTES = {
    "/pathsend": pathsend,
    "/buffered-rest": buffered_rest,
    "/upload-slowly": upload_slowly,
    "/echo": echo_or_report,
    "/sse": sse,
    "/exit": midway_exit,
    "/raise-midway": raise_midway,
    "/str-body": str_body,
    "/bad-count": bad_count,
    "/stream-slowly": stream_slowly,
    "/strays": strays,
    "/ok": ok,
}


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    route = ROUTES.get(scope["path"])
    if route is None:
        await start(send, 404, length=0)
        await send({"type": "http.response.body", "body": b""})
        return
    await route(scope, receive, send)
