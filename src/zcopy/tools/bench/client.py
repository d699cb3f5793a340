"""The client process: ``python -m zcopy.tools.bench.client PORT TRANSFERS SIZE CRC``.

Connects ``TRANSFERS`` times, one after another, reads each response to EOF
with ``recv_into`` a reused 1 MiB buffer, and checks the byte count and a
CRC-32 of every byte (zlib's, several GB/s: cheap enough that the client is
not what limits the wall time). One JSON line per transfer on stdout:
``{"i": 0, "bytes": N, "ok": true, "wall_s": 0.1}``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import zlib

_BUF = 1 << 20
_TIMEOUT = 120.0


def receive(port: int, expect_size: int, expect_crc: int) -> tuple[int, bool, float, str]:
    """One transfer: (bytes, verified, wall seconds from connect to EOF, error text)."""
    buf = bytearray(_BUF)
    view = memoryview(buf)
    total = 0
    crc = 0
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=_TIMEOUT) as conn:
            recv_into = conn.recv_into
            while True:
                n = recv_into(view)
                if not n:
                    break
                crc = zlib.crc32(view[:n], crc)
                total += n
    except OSError as exc:
        return total, False, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - start
    ok = total == expect_size and crc == expect_crc
    err = "" if ok else (
        f"got {total} bytes, expected {expect_size}" if total != expect_size
        else "content differs (CRC-32 mismatch)"
    )
    return total, ok, wall, err


def main(argv: list[str] | None = None) -> int:
    """Run the transfers; exit 1 at the first one that fails verification."""
    p = argparse.ArgumentParser(prog="python -m zcopy.tools.bench.client")
    p.add_argument("port", type=int)
    p.add_argument("transfers", type=int)
    p.add_argument("size", type=int)
    p.add_argument("crc", type=int)
    a = p.parse_args(argv)
    for i in range(a.transfers):
        got, ok, wall, err = receive(a.port, a.size, a.crc)
        line = {"i": i, "bytes": got, "ok": ok, "wall_s": wall, "error": err}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        if not ok:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
