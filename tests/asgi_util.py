"""Helpers for the ``zcopy serve --app`` tests: start a server on the test apps, one request."""

from __future__ import annotations

import http.client
import os
from collections.abc import Sequence
from pathlib import Path

from serve_util import ServeProc

TESTS = Path(__file__).resolve().parent


def start(
    root: Path, app: str = "asgi_apps:app", *args: str, prefix: Sequence[str] = (), **env: str
) -> ServeProc:
    """``zcopy serve --app APP`` with the test apps importable and ``root`` as their files."""
    old = dict(os.environ)
    os.environ.update(ZCOPY_TEST_ROOT=str(root), **env)
    try:
        return ServeProc(None, "--app", app, "--app-dir", str(TESTS), *args, prefix=prefix)
    finally:
        os.environ.clear()
        os.environ.update(old)


def request(
    port: int, method: str, path: str, body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request on a fresh connection: the response (read) and its body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()
