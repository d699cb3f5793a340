"""``zcopy.asgi.FileResponse``: byte-exact under a real uvicorn, and its arguments in memory.

uvicorn advertises neither pathsend nor zerocopysend, so every body here goes
through the read loop: the proof that the fallback is correct over real HTTP.
A FastAPI route returning it checks the Starlette ``Response`` subclassing.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import struct
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgi_fake import BOTH, Uvicorn, multipart_parts, run_app
from serve_util import wait_for

from zcopy.asgi import Delivery, FileResponse
from zcopy.asgi.delivery import CHUNK
from zcopy.asgi.opened import IDLE
from zcopy.asgi.types import Message
from zcopy.serve.conditional import http_date
from zcopy.tools._proc import fd_targets

SIZE = 2 * CHUNK + 12345  # three read-loop chunks, the last one short

APP = """
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from zcopy.asgi import FileResponse

DATA = {data!r}

async def plain(request):
    return FileResponse(DATA)

async def named(request):
    return FileResponse(DATA, filename="r\\u00e9sum\\u00e9 \\"1\\".bin", headers={{"x-app": "1"}})

async def big(request):
    return FileResponse(request.query_params["path"])

async def typed(request):
    return FileResponse(DATA, media_type="text/csv", status_code=203)

api = FastAPI()

@api.get("/file")
async def fastapi_file():
    return FileResponse(DATA)

app = Starlette(routes=[
    Route("/plain", plain, methods=["GET", "HEAD"]),
    Route("/named", named),
    Route("/typed", typed),
    Route("/big", big),
    Mount("/api", app=api),
])
"""


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    d = tmp_path_factory.mktemp("asgi-response")
    data = os.urandom(SIZE)
    (d / "data.bin").write_bytes(data)
    return d / "data.bin", data


@pytest.fixture(scope="module")
def server(data_file: tuple[Path, bytes]) -> Iterator[Uvicorn]:
    path, _ = data_file
    (path.parent / "fileapp.py").write_text(textwrap.dedent(APP.format(data=str(path))))
    with Uvicorn(path.parent, "fileapp:app") as srv:
        yield srv


def test_whole_file_byte_exact(server: Uvicorn, data_file: tuple[Path, bytes]) -> None:
    _, data = data_file
    status, headers, body = server.request("/plain")
    assert status == 200 and body == data, server.output()
    assert headers["content-length"] == str(SIZE)
    assert headers["accept-ranges"] == "bytes" and headers["etag"].startswith('"')
    assert headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-CHUNKEND", 100, CHUNK + 10),
        ("bytes=-7", SIZE - 7, SIZE - 1),
        ("bytes=CHUNK-", CHUNK, SIZE - 1),
        ("bytes=5-999999999", 5, SIZE - 1),
    ],
)
def test_single_ranges(
    server: Uvicorn, data_file: tuple[Path, bytes], spec: str, first: int, last: int
) -> None:
    _, data = data_file
    spec = spec.replace("CHUNKEND", str(CHUNK + 10)).replace("CHUNK", str(CHUNK))
    status, headers, body = server.request("/plain", {"Range": spec})
    assert status == 206
    assert headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert body == data[first : last + 1]


def test_multipart(server: Uvicorn, data_file: tuple[Path, bytes]) -> None:
    _, data = data_file
    status, headers, body = server.request("/plain", {"Range": f"bytes=0-9, {CHUNK}-{CHUNK + 9}"})
    assert status == 206 and headers["content-length"] == str(len(body))
    assert multipart_parts(headers["content-type"], body) == [
        (f"bytes 0-9/{SIZE}", data[:10]),
        (f"bytes {CHUNK}-{CHUNK + 9}/{SIZE}", data[CHUNK : CHUNK + 10]),
    ]


def test_head(server: Uvicorn) -> None:
    status, headers, body = server.request("/plain", {"Range": "bytes=0-0"}, method="HEAD")
    assert (status, headers["content-length"], body) == (200, str(SIZE), b"")


def test_preconditions(server: Uvicorn, data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    _, headers, _ = server.request("/plain")
    etag = headers["etag"]
    assert server.request("/plain", {"If-None-Match": etag})[0] == 304
    assert server.request("/plain", {"If-Modified-Since": headers["last-modified"]})[0] == 304
    assert server.request("/plain", {"If-Match": '"other"'})[0] == 412
    old = http_date(os.stat(path).st_mtime - 3600)
    assert server.request("/plain", {"If-Unmodified-Since": old})[0] == 412
    status, h416, _ = server.request("/plain", {"Range": f"bytes={SIZE}-"})
    assert (status, h416["content-range"]) == (416, f"bytes */{SIZE}")
    # If-Range: the current ETag lets the range through, a stale one gets the whole file
    assert server.request("/plain", {"Range": "bytes=0-1", "If-Range": etag})[2] == data[:2]
    status, _, body = server.request("/plain", {"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert (status, body) == (200, data)


def test_filename_and_headers(server: Uvicorn) -> None:
    status, headers, _ = server.request("/named")
    assert status == 200 and headers["x-app"] == "1"
    assert headers["content-disposition"] == (
        'attachment; filename="r_sum_ \\"1\\".bin"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.bin"
    )


def test_media_type_and_status(server: Uvicorn, data_file: tuple[Path, bytes]) -> None:
    _, data = data_file
    status, headers, body = server.request("/typed", {"Range": "bytes=0-0"})
    assert (status, body) == (203, data)  # another status: the whole file, as Starlette does
    assert headers["content-type"] == "text/csv; charset=utf-8"


def test_fastapi_endpoint(server: Uvicorn, data_file: tuple[Path, bytes]) -> None:
    _, data = data_file
    assert server.request("/api/file")[2] == data
    status, _, body = server.request("/api/file", {"Range": "bytes=10-19"})
    assert (status, body) == (206, data[10:20])


def test_missing_file_is_404_not_a_crash(tmp_path: Path) -> None:
    got = run_app(FileResponse(tmp_path / "gone"), extensions=BOTH)
    assert got.status == 404 and b"404" in got.body
    assert run_app(FileResponse(tmp_path), extensions=BOTH).status == 404  # a directory


def test_remembered_description_follows_the_file(tmp_path: Path) -> None:
    """The description is cached per file version: a rewrite gets a new ETag and length."""
    f = tmp_path / "a.txt"
    f.write_bytes(b"0123456789")
    os.utime(f, ns=(10**18, 10**18))
    first = run_app(FileResponse(f), extensions=BOTH)
    again = run_app(FileResponse(f), extensions=BOTH)
    assert first.headers["etag"] == again.headers["etag"]
    f.write_bytes(b"01234")
    os.utime(f, ns=(10**18, 10**18))  # same mtime, other size: still another version
    changed = run_app(FileResponse(f), extensions=BOTH)
    assert changed.headers["etag"] != first.headers["etag"]
    assert changed.headers["content-length"] == "5" and changed.body == b"01234"
    named = run_app(FileResponse(f, filename="x.csv"), extensions=BOTH)
    assert named.headers["content-type"] == "text/csv; charset=utf-8"


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    response = FileResponse(fifo)
    assert run_app(response, extensions=BOTH).status == 403
    assert response.delivery is Delivery.MEMORY


def test_header_names_the_plan_owns_cannot_be_overridden(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"0123456789")
    response = FileResponse(
        f,
        headers={"Content-Length": "1", "Content-Type": "text/x-mine", "ETag": '"mine"', "X": "y"},
    )
    got = run_app(response, headers={"range": "bytes=2-3"}, extensions=BOTH)
    assert got.headers["content-length"] == "2" and got.body == b"23"
    assert got.headers["content-type"] == "text/x-mine; charset=utf-8"
    assert got.headers["etag"] == '"mine"' and got.headers["x"] == "y"
    assert run_app(response, headers={"if-none-match": '"mine"'}).status == 304


def test_starlette_response_api(tmp_path: Path) -> None:
    from starlette.background import BackgroundTask
    from starlette.responses import Response

    f = tmp_path / "a.txt"
    f.write_bytes(b"abc")
    ran: list[bool] = []

    async def later() -> None:
        ran.append(True)

    response = FileResponse(f, background=BackgroundTask(later))
    assert isinstance(response, Response)
    response.set_cookie("k", "v")
    got = run_app(response)
    assert got.headers["set-cookie"].startswith("k=v") and got.body == b"abc"
    assert ran == [True]


def test_concurrent_calls_share_nothing(tmp_path: Path) -> None:
    """One response object answering many requests at once (a module-level response)."""
    f = tmp_path / "a.bin"
    data = os.urandom(CHUNK * 2)
    f.write_bytes(data)
    response = FileResponse(f)

    async def one(i: int) -> bytes:
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            body = message.get("body", b"")
            assert isinstance(body, bytes)
            chunks.append(body)
            await asyncio.sleep(0)

        async def receive() -> Message:
            await asyncio.sleep(3600)
            return {}

        rng = f"bytes={i}-{i + CHUNK}".encode()
        scope = {"type": "http", "method": "GET", "headers": [(b"range", rng)]}
        await response(scope, receive, send)
        return b"".join(chunks)

    async def many() -> list[bytes]:
        return await asyncio.gather(*(one(i) for i in range(20)))

    for i, body in enumerate(asyncio.run(many())):
        assert body == data[i : i + CHUNK + 1]


def _server_rchar(server: Uvicorn) -> int:
    """Bytes the uvicorn process has read by read-family syscalls (/proc/PID/io)."""
    for line in Path(f"/proc/{server.proc.pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


def _fds(server: Uvicorn) -> list[str]:
    """What the uvicorn process's fds point at."""
    return fd_targets(server.proc.pid)


def _fetch_some_then_leave(server: Uvicorn, path: Path, nbytes: int) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        s.sendall(f"GET /big?path={path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        got = 0
        while got < nbytes:
            chunk = s.recv(65536)
            assert chunk, "server closed early"
            got += len(chunk)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST


def test_client_leaving_stops_the_read_loop(server: Uvicorn, tmp_path: Path) -> None:
    """uvicorn drops sends to a gone client silently; the disconnect watch stops the reads."""
    sparse = tmp_path / "sparse.bin"
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB that reads fast: without the watch it would all be read
    before = _server_rchar(server)
    for _ in range(3):
        _fetch_some_then_leave(server, sparse, 1 << 20)
    time.sleep(1.5)
    read = _server_rchar(server) - before
    assert read < 3 * (64 << 20), f"the server read {read >> 20} MiB for clients that left"
    assert server.request("/plain")[0] == 200  # and it serves on
    # every file closed: by its response, or (kept open for the next request) once idle
    wait_for(lambda: not [p for p in _fds(server) if p.endswith("sparse.bin")],
             timeout=5 + IDLE, what="the served file's fd to close")


def test_file_shrinking_mid_body_closes_never_pads(server: Uvicorn, tmp_path: Path) -> None:
    f = tmp_path / "shrinks.bin"
    data = os.urandom(32 << 20)
    f.write_bytes(data)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request("GET", f"/big?path={f}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("content-length") == str(len(data))
        first = resp.read(1 << 20)
        with open(f, "r+b") as shrink:
            shrink.truncate(4 << 20)
        with pytest.raises(http.client.IncompleteRead) as caught:
            resp.read()
        body = first + caught.value.partial
        assert len(body) < len(data) and data.startswith(body)  # a prefix, never padding
    finally:
        conn.close()
    assert server.request("/plain")[0] == 200
