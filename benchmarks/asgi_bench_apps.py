"""The one ASGI app benchmarks/asgi_bench.py runs under every server.

Files come from ``ZCOPY_BENCH_ROOT``::

    /hello          Starlette PlainTextResponse("Hello, world!")
    /z/NAME         zcopy.asgi.FileResponse (ranges: zerocopysend where offered)
    /NAME           Starlette FileResponse (pathsend where offered, else a read loop)

``layers`` is the same app behind a plain ASGI dispatcher that answers a ranged
GET by less and less machinery, to see what each layer costs per request
(asgi_bench.py ``--measure layers``, under ``zcopy serve --app`` only)::

    /mem/NAME       the range's length in bytes from memory: no file at all
    /zc/NAME        one zerocopysend from a file opened once, a head written by hand
    /zf/NAME        zcopy.asgi.FileResponse, no framework
    anything else   the Starlette app above (/z/NAME: FileResponse under its router)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from zcopy import asgi as zasgi

ROOT = Path(os.environ.get("ZCOPY_BENCH_ROOT", "."))


async def hello(request: Request) -> Response:
    return PlainTextResponse("Hello, world!")


async def zfile(request: Request) -> Any:
    return zasgi.FileResponse(ROOT / request.path_params["name"])


async def file(request: Request) -> Response:
    return FileResponse(ROOT / request.path_params["name"])


app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/z/{name:path}", zfile),
        Route("/{name:path}", file),
    ]
)


_KEPT: dict[str, tuple[int, int]] = {}  # NAME -> (fd, size), opened once: no open per request


def _range(scope: Scope) -> tuple[int, int]:
    """The one ``bytes=a-b`` range the benchmark sends (no validation: a fixed client)."""
    for name, value in scope["headers"]:
        if name == b"range":
            first, last = value.partition(b"=")[2].split(b"-")
            return int(first), int(last)
    raise ValueError("the layers app needs a Range: bytes=a-b request")


async def layers(scope: Scope, receive: Receive, send: Send) -> None:
    """``app`` behind the per-layer paths (see the module docstring)."""
    path = scope.get("path", "")
    if scope["type"] != "http" or not path.startswith(("/mem/", "/zc/", "/zf/")):
        return await app(scope, receive, send)
    name = path.split("/", 2)[2]
    if path.startswith("/zf/"):
        return await zasgi.FileResponse(ROOT / name)(scope, receive, send)
    first, last = _range(scope)
    kept = _KEPT.get(name)
    if kept is None:
        fd = os.open(ROOT / name, os.O_RDONLY | os.O_CLOEXEC)
        kept = _KEPT[name] = (fd, os.fstat(fd).st_size)
    fd, size = kept
    fields = [
        (b"content-type", b"application/octet-stream"),
        (b"content-range", b"bytes %d-%d/%d" % (first, last, size)),
        (b"content-length", b"%d" % (last - first + 1)),
    ]
    await send({"type": "http.response.start", "status": 206, "headers": fields})
    if path.startswith("/mem/"):
        await send({"type": "http.response.body", "body": bytes(last - first + 1)})
        return
    await send({"type": "http.response.zerocopysend", "file": fd, "offset": first,
                "count": last - first + 1})
