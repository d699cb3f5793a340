"""For the zcopy.asgi (app side) tests: a tiny in-process ASGI server, and uvicorn in a subprocess.

``run_app`` plays the server side of the protocol in memory: it offers the
extensions a test asks for, records every message the app sends, and renders
the body a real server would put on the wire (reading the file for
pathsend/zerocopysend messages). It checks *which* messages an app sends; the
kernel side of those messages is ASGI-SERVER's (``zcopy serve --app``).
``Uvicorn`` runs a real server on a socket the test bound, for byte-exact
checks over real HTTP.
"""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zcopy.asgi.types import PATHSEND, ZEROCOPYSEND, ASGIApp, Message

SRC = Path(__file__).resolve().parents[1] / "src"
BOTH: dict[str, Any] = {PATHSEND: {}, ZEROCOPYSEND: {}}


@dataclass
class Exchange:
    """What the app sent, and the response it amounts to."""

    messages: list[Message] = field(default_factory=list)
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def kinds(self) -> list[str]:
        """The message types, in order, with ``more_body`` marked by a ``+``."""
        return [m["type"] + ("+" if m.get("more_body") else "") for m in self.messages]


def _file_bytes(message: Message) -> bytes:
    """The bytes a pathsend or zerocopysend message asks for, as the spec defines them."""
    if message["type"] == PATHSEND:
        assert os.path.isabs(message["path"]), "pathsend paths must be absolute"
        return Path(message["path"]).read_bytes()
    file = message["file"]
    fd = file if isinstance(file, int) else file.fileno()
    offset = message.get("offset")
    if offset is None:
        offset = os.lseek(fd, 0, os.SEEK_CUR)
    count = message.get("count")
    size = os.fstat(fd).st_size
    return os.pread(fd, (size - offset) if count is None else count, offset)


def run_app(
    app: ASGIApp,
    path: str = "/",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
    spec_version: str = "2.4",
    root_path: str = "",
    raw_path: bytes | None = None,
) -> Exchange:
    """Run one request through ``app`` in memory and return what it sent."""
    out = Exchange()
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": root_path + path,
        "raw_path": raw_path if raw_path is not None else (root_path + path).encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "extensions": extensions if extensions is not None else {},
    }
    done = False

    async def receive() -> Message:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # the client never leaves
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        out.messages.append(message)
        kind = message["type"]
        if kind == "http.response.start":
            out.status = message["status"]
            out.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif kind == "http.response.body":
            out.body += message.get("body", b"")
        elif kind in (PATHSEND, ZEROCOPYSEND):
            assert kind in scope["extensions"], f"{kind} sent but not advertised"
            out.body += _file_bytes(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    return out


def multipart_parts(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(Content-Range, payload) of each part of a multipart/byteranges body."""
    msg = email.parser.BytesParser().parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = msg.get_payload()
    assert isinstance(parts, list)
    out = []
    for part in parts:
        assert isinstance(part, email.message.Message)
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out.append((str(part["Content-Range"]), payload))
    return out


class Uvicorn:
    """``uvicorn MODULE:ATTR`` on a listening socket bound by the test (``--fd``)."""

    def __init__(self, app_dir: Path, app: str, *args: str) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONUNBUFFERED="1")
        fd = self.listener.fileno()
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--fd",
            str(fd),
            "--app-dir",
            str(app_dir),
            "--log-level",
            "warning",
            "--no-access-log",
            *args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, pass_fds=(fd,)
        )

    def request(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a fresh connection: (status, lower-case headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            body = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        finally:
            conn.close()

    def output(self) -> str:
        """What uvicorn logged so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __enter__(self) -> Uvicorn:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.listener.close()
        self.log.close()
