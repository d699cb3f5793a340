"""What the benchmark scripts share beyond ``zcopy.tools._proc``: peers' versions, readiness, stop.

Each script in this folder is orchestration: which peers, which measurements,
which table. The machinery they all need (process trees, CPU, machine facts,
``free_port``, ``median``/``spread``) is ``zcopy.tools._proc``; the few
benchmark-only helpers are here.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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
