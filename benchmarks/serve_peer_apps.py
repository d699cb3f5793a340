"""The Python file servers benchmarks/serve_bench.py compares `zcopy serve` with.

Each serves every file under DIR at its own path through the framework's own
``FileResponse``, one process, no access log::

    python benchmarks/serve_peer_apps.py aiohttp DIR PORT
    python benchmarks/serve_peer_apps.py starlette DIR PORT   # on uvicorn

(`python -m http.server` needs no app.) Install the frameworks with the
`peers` extra: ``pip install -e '.[peers]'``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def run_aiohttp(root: Path, port: int) -> None:
    """aiohttp's ``web.FileResponse`` (sendfile through ``loop.sendfile``)."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(root / request.match_info["name"])

    app = web.Application()
    app.router.add_get("/{name:.+}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def run_starlette(root: Path, port: int) -> None:
    """Starlette's ``FileResponse`` on uvicorn (reads the file in chunks, sends them)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse
    from starlette.routing import Route

    async def handle(request: Request) -> FileResponse:
        return FileResponse(root / request.path_params["name"])

    app = Starlette(routes=[Route("/{name:path}", handle)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("aiohttp", "starlette"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, root, port = argv[0], Path(argv[1]), int(argv[2])
    (run_aiohttp if kind == "aiohttp" else run_starlette)(root, port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
