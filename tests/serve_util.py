"""A real ``zcopy serve`` process for the serve tests, and a tiny raw HTTP/1.1 client."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from zcopy.tools._proc import cpu_of, fd_targets

SRC = Path(__file__).resolve().parents[1] / "src"
_ANNOUNCE = re.compile(r"http://[^:]+:(\d+)/ \(pid (\d+)")


class ServeProc:
    """``python -m zcopy.serve ROOT --port 0 ...`` in a subprocess, stopped on exit.

    ``root`` None: no directory argument (``--app`` servers take none).
    """

    def __init__(self, root: Path | str | None, *args: str, prefix: Sequence[str] = ()) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="zcopy-serve-")
        self.access_path = Path(self.tmp.name) / "access.log"
        self.stderr_path = Path(self.tmp.name) / "stderr.log"
        env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONUNBUFFERED="1")
        cmd = [
            *prefix, sys.executable, "-m", "zcopy.serve", *([] if root is None else [str(root)]),
            "--port", "0", "--access-log", str(self.access_path), *args,
        ]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        line = self._first_line(timeout=30)
        m = _ANNOUNCE.search(line)
        if m is None:
            self.kill()
            raise RuntimeError(f"server did not start: {line!r}\n{self.stderr()}")
        self.port = int(m[1])
        self.pid = int(m[2])  # the server itself (proc.pid may be strace's)

    def _first_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                return ""
        finally:
            sel.close()
        return self.proc.stdout.readline().decode(errors="replace")

    def __enter__(self) -> ServeProc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the server and wait for it; return its exit status."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def kill(self) -> None:
        """Last resort."""
        self.proc.kill()
        self.proc.wait(10)

    def stderr(self) -> str:
        """What the server wrote on stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def access_log(self) -> str:
        """The access log so far (flushed about once a second by the server)."""
        return self.access_path.read_text(errors="replace") if self.access_path.exists() else ""

    def fds(self) -> list[str]:
        """What the server process's fds point at."""
        return fd_targets(self.pid)

    def connect(self, timeout: float = 10) -> socket.socket:
        """A client socket connected to the server."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)


def run_clients(clients: Sequence[Callable[[], None]], timeout: float = 60) -> None:
    """Run each client in its own thread at once; fail if one hangs or raises.

    A client's exception is reported with the others (an assertion in a thread would
    otherwise only print).
    """
    errors: list[str] = []

    def guarded(client: Callable[[], None], k: int) -> None:
        try:
            client()
        except BaseException as exc:
            errors.append(f"client {k}: {exc!r}")

    threads = [threading.Thread(target=guarded, args=(c, k)) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not errors, errors


def wait_for(cond: Callable[[], object], timeout: float = 15, what: str = "condition") -> None:
    """Poll ``cond`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Response:
    """One parsed response."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw_head: bytes = b""


def read_response(f: BinaryIO, *, head: bool = False) -> Response:
    """Read one response from a socket file; body by Content-Length, else to EOF."""
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed before a response")
    raw = [line]
    status = int(line.split()[1])
    hdrs: dict[str, str] = {}
    while True:
        h = f.readline()
        raw.append(h)
        if h in (b"\r\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if head or status in (204, 304):
        body = b""
    elif "content-length" in hdrs:
        n = int(hdrs["content-length"])
        chunks = []
        while n > 0:
            c = f.read(n)
            if not c:
                break
            chunks.append(c)
            n -= len(c)
        body = b"".join(chunks)
    else:
        body = f.read()
    return Response(status, hdrs, body, b"".join(raw))


def raw_request(
    port: int, text: str | bytes, *, head: bool = False, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request on a fresh connection; return (status, headers, body)."""
    data = text.encode("latin-1") if isinstance(text, str) else text
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        with s.makefile("rb") as f:
            r = read_response(f, head=head)
    return r.status, r.headers, r.body


def get(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> Response:
    """One request with the given headers on a fresh connection."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        with s.makefile("rb") as f:
            return read_response(f, head=method == "HEAD")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    return cpu_of(pid).ticks


def request_bytes(path: str, *extra: str, version: str = "1.1", method: str = "GET") -> bytes:
    """A request head as bytes: ``Host: t`` plus ``extra`` field lines."""
    lines = [f"{method} {path} HTTP/{version}", "Host: t", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
