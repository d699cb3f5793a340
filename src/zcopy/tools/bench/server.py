"""The measured server process: ``python -m zcopy.tools.bench.server MODE FILE SIZE TRANSFERS``.

It binds 127.0.0.1 on a port the kernel picks (no clash possible), prints
``ready PORT``, serves ``TRANSFERS`` connections one after another with the
mode's handler (``sent BYTES`` after each), prints ``done`` and then sits idle
until its stdin closes, so the parent can read its CPU accounting while it is
still alive and quiet. All imports happen before ``ready``: nothing but the
transfers runs between the parent's two CPU samples.

``ZCOPY_BENCH_FAULT=MODE:N`` makes the server of MODE die on its (N+1)th
connection: how the tests check that a crash mid-run is reported and cleaned up.
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import sys

from .modes import handler, readinto

FAULT_ENV = "ZCOPY_BENCH_FAULT"
FAULT_EXIT = 70


def _fault_after(mode: str) -> int | None:
    spec = os.environ.get(FAULT_ENV, "")
    name, _, after = spec.partition(":")
    return int(after) if name == mode and after.isdigit() else None


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve(mode: str, path: str, size: int, transfers: int, bufsize: int | None = None) -> int:
    """Serve ``transfers`` connections with ``mode``'s handler; the process's whole job."""
    send = handler(mode)
    if bufsize is not None:
        if mode != "readinto":
            raise SystemExit(f"--bufsize applies to the readinto mode, not {mode}")
        send = functools.partial(readinto, buffer_size=bufsize)
    crash_after = _fault_after(mode)
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        _say(f"ready {listener.getsockname()[1]}")
        for i in range(transfers):
            conn, _ = listener.accept()
            if crash_after is not None and i >= crash_after:
                os._exit(FAULT_EXIT)
            with conn:
                sent = send(conn, path, size)
                conn.shutdown(socket.SHUT_WR)
            _say(f"sent {sent}")
    _say("done")
    sys.stdin.buffer.read()  # idle until the parent has taken its CPU sample
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve."""
    p = argparse.ArgumentParser(prog="python -m zcopy.tools.bench.server")
    p.add_argument("mode")
    p.add_argument("file")
    p.add_argument("size", type=int)
    p.add_argument("transfers", type=int)
    p.add_argument("--bufsize", type=int, help="zcopy's user-space buffer size for this run")
    a = p.parse_args(argv)
    return serve(a.mode, a.file, a.size, a.transfers, a.bufsize)


if __name__ == "__main__":
    sys.exit(main())
