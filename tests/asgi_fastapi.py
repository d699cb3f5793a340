"""A FastAPI app mounted beside the Starlette test routes (``asgi_fastapi:app``)."""

from __future__ import annotations

from asgi_apps import ROOT, lifespan, routes
from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.applications import Starlette
from starlette.routing import Mount

fastapi_app = FastAPI()


@fastapi_app.get("/file/{name}")
async def fastapi_file(name: str) -> FileResponse:
    return FileResponse(ROOT / name)


app = Starlette(routes=[*routes, Mount("/fastapi", fastapi_app)], lifespan=lifespan)
