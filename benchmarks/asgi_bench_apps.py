"""The one ASGI app benchmarks/asgi_bench.py runs under every server.

Files come from ``ZCOPY_BENCH_ROOT``::

    /hello          Starlette PlainTextResponse("Hello, world!")
    /z/NAME         zcopy.asgi.FileResponse (ranges: zerocopysend where offered)
    /NAME           Starlette FileResponse (pathsend where offered, else a read loop)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

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
