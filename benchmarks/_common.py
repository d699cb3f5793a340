"""What the benchmark scripts share beyond ``zcopy.tools._proc``: peers, HTTP client, lock.

Each script in this folder is orchestration: which peers, which measurements,
which table. The machinery they all need (process trees, CPU, machine facts,
``free_port``, ``median``/``spread``) is ``zcopy.tools._proc``; the few
benchmark-only helpers are here.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
LOCK = "/tmp/zcopy-bench.lock"  # one benchmark at a time on this machine
ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:  # run as a script from a checkout, installed or not
    sys.path.insert(0, str(SRC))


def version(dist: str) -> str:
    """The installed version of a distribution, or ``-`` when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30,
                   hello: bytes = b"") -> None:
    """Wait until something accepts on 127.0.0.1:``port``; RuntimeError if ``proc`` exits first.

    ``hello`` is sent on the probe connection (an upstream that wants a first byte).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            if hello:
                s.sendall(hello)
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout:g}s")


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the process group ``proc`` leads (``start_new_session``), SIGKILL if it stays."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def tail(path: Path | None, n: int = 15) -> str:
    """The last ``n`` lines of a log file ("" when there is none), to show why a peer failed."""
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def read_head(sock: socket.socket, what: str) -> tuple[bytes, bytes]:
    """Read one response head; return (head, the body bytes that came with it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"no response head from {what}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def http_get(port: int, path: str, buf: bytearray, *, extra: str = "",
             timeout: float = 120) -> tuple[int, int]:
    """One GET with ``Connection: close``; the body is read to EOF into ``buf`` (reused).

    Returns (status, body bytes); a body whose length disagrees with Content-Length raises.
    """
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
           "Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req)
        head, rest = read_head(s, f":{port}{path}")
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        got = len(rest)
        while n := s.recv_into(buf):
            got += n
    if m and int(m[1]) != got:
        raise ConnectionError(f":{port}{path}: {got} body bytes, Content-Length {int(m[1])}")
    return status, got


def rotated(items: list[T], i: int) -> list[T]:
    """The turn order for repeat ``i``: nobody is always first or always last."""
    k = i % len(items) if items else 0
    return items[k:] + items[:k]


def bench_lock(quick: bool) -> Any:
    """Hold the benchmark lock if nobody does (normally ``flock`` around us already holds it).

    A ``quick`` (smoke) run times nothing and takes no lock.
    """
    if quick:
        return None
    f = open(LOCK, "a")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print(f"note: not run under `flock {LOCK}`; holding the lock myself", flush=True)
        return f
    except BlockingIOError:
        f.close()  # held: by the flock(1) that runs us, we trust
        return None
