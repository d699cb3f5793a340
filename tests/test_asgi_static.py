"""``zcopy.asgi.StaticFiles``: a mounted directory under uvicorn, and hostile paths in memory."""

from __future__ import annotations

import asyncio
import os
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgi_fake import BOTH, Uvicorn, multipart_parts, run_app

from zcopy.asgi import StaticFiles
from zcopy.asgi.static import route_target
from zcopy.asgi.types import Message

APP = """
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

from zcopy.asgi import StaticFiles

api = FastAPI()
api.mount("/assets", StaticFiles({site!r}))
app = Starlette(routes=[Mount("/static", app=StaticFiles({site!r})), Mount("/api", app=api)])
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("asgi-static")
    root = base / "site"
    (root / "sub").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "big.bin").write_bytes(os.urandom(600_000))
    (root / "a b.txt").write_text("spaced\n")
    (root / "docs" / "index.html").write_text("<h1>docs</h1>\n")
    (root / ".secret").write_text("hidden\n")
    (base / "outside.txt").write_text("outside\n")
    (root / "escape").symlink_to(base / "outside.txt")
    (root / "inside").symlink_to(root / "a b.txt")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[Uvicorn]:
    (site.parent / "staticapp.py").write_text(textwrap.dedent(APP.format(site=str(site))))
    with Uvicorn(site.parent, "staticapp:app") as srv:
        yield srv


def raw_status(port: int, target: str) -> int:
    """The status for a request-target sent exactly as written (no client normalising)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        line = s.makefile("rb").readline()
    return int(line.split()[1])


def test_files_byte_exact(server: Uvicorn, site: Path) -> None:
    data = (site / "big.bin").read_bytes()
    for prefix in ("/static", "/api/assets"):
        status, headers, body = server.request(prefix + "/big.bin")
        assert status == 200 and body == data, server.output()
        status, headers, body = server.request(prefix + "/big.bin", {"Range": "bytes=1-2,-3"})
        assert multipart_parts(headers["content-type"], body) == [
            ("bytes 1-2/600000", data[1:3]),
            ("bytes 599997-599999/600000", data[-3:]),
        ]
    status, headers, body = server.request("/static/a%20b.txt")
    assert (status, body) == (200, b"spaced\n")
    assert headers["content-type"] == "text/plain; charset=utf-8"


def test_head_and_conditionals(server: Uvicorn) -> None:
    status, headers, body = server.request("/static/big.bin", method="HEAD")
    assert (status, headers["content-length"], body) == (200, "600000", b"")
    assert server.request("/static/big.bin", {"If-None-Match": headers["etag"]})[0] == 304


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/static/../outside.txt", 400),
        ("/static/%2e%2e/outside.txt", 400),
        ("/static/sub/..%2f..%2foutside.txt", 400),
        ("/static/a%00b", 400),
        ("/static/.secret", 404),
        ("/static/%2esecret", 404),
        ("/static/escape", 404),  # a symlink leading out of the directory
        ("/static/inside", 200),  # one that stays inside
        ("/static/fifo", 403),
        ("/static/missing", 404),
        ("/static/sub/", 404),  # a directory without index.html: no listing
        ("/static/docs/", 200),
        ("/static/docs", 301),
        ("/static/big.bin/", 404),
    ],
)
def test_hostile_and_odd_paths(server: Uvicorn, target: str, status: int) -> None:
    assert raw_status(server.port, target) == status


def test_redirect_keeps_the_mount_point(server: Uvicorn) -> None:
    status, headers, _ = server.request("/static/docs?x=1")
    assert (status, headers["location"]) == (301, "/static/docs/?x=1")


def test_methods(site: Path) -> None:
    got = run_app(StaticFiles(site), "/big.bin", method="POST", extensions=BOTH)
    assert got.status == 405 and got.headers["allow"] == "GET, HEAD"


def test_fast_path_messages(site: Path) -> None:
    got = run_app(StaticFiles(site), "/big.bin", headers={"range": "bytes=0-9"}, extensions=BOTH)
    assert got.kinds == ["http.response.start", "http.response.zerocopysend"]
    assert got.body == (site / "big.bin").read_bytes()[:10]


def test_swapped_symlink_is_caught_at_open(site: Path) -> None:
    """The check is on the opened fd, so a link that changes between requests never leaks."""
    link = site / "swap"
    app = StaticFiles(site)
    try:
        for _ in range(20):
            link.symlink_to(site / "a b.txt")
            assert run_app(app, "/swap").status == 200
            link.unlink()
            link.symlink_to(site.parent / "outside.txt")
            got = run_app(app, "/swap")
            assert got.status == 404 and b"outside" not in got.body
            link.unlink()
    finally:
        if link.is_symlink():
            link.unlink()


def test_dotfiles_opt_in(site: Path) -> None:
    assert run_app(StaticFiles(site, dotfiles=True), "/.secret").body == b"hidden\n"


def test_route_target_under_a_mount() -> None:
    scope = {"path": "/m/a%2Fb", "raw_path": b"/m/a%252Fb", "root_path": "/m"}
    assert route_target(scope) == "/a%252Fb"  # the raw form: an encoded slash stays encoded
    assert route_target({"path": "/x", "root_path": ""}) == "/x"


def test_a_sibling_of_the_mount_point_is_not_under_it(site: Path) -> None:
    """``/staticnested/x`` is not ``/nested/x`` below a mount at ``/static``."""
    (site / "nested").mkdir(exist_ok=True)
    (site / "nested" / "x.txt").write_bytes(b"nested\n")
    for raw in (b"/staticnested/x.txt", None):
        scope = {"path": "/staticnested/x.txt", "raw_path": raw, "root_path": "/static"}
        assert route_target(scope) == "/staticnested/x.txt"
    assert run_app(StaticFiles(site), "nested/x.txt", root_path="/static").status == 404
    assert run_app(StaticFiles(site), "/nested/x.txt", root_path="/static").status == 200
    assert route_target({"path": "/static/", "root_path": "/static/"}) == "/"


def test_not_a_directory() -> None:
    with pytest.raises(ValueError, match="not a directory"):
        StaticFiles("/nonexistent/dir")


def test_lifespan_and_websocket(site: Path) -> None:
    app = StaticFiles(site)
    sent: list[Message] = []
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    asyncio.run(app({"type": "websocket", "path": "/"}, receive, send))
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
        "websocket.close",
    ]
