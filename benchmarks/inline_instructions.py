"""User-space instructions per inline answer of ``zcopy serve``: a count, not a timing.

This VM's clock moves every timed figure by ±20-40% between runs, so the Python cost of
the static server's hot path is decided here by instructions, which do not depend on the
machine's load: valgrind's callgrind runs an in-process harness twice, with ``--small``
and ``--large`` requests, and the difference over the difference in requests is the cost of
one request with the start-up cancelled out.

The harness: one ``Server`` (a directory with a 4 KiB file), one real loopback TCP
connection, the file opened by a first request through the task path; then each request
is sent by the client side, answered by ``Conn._readable`` (the reader callback: recv, the
one-step head, the inline answer's checks, ``pread`` and ``sendmsg``) and read back. The
count holds the client's few calls too (the same in every A/B). To compare two trees, run
it with each on ``PYTHONPATH``:

    .venv/bin/python benchmarks/inline_instructions.py
    PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/inline_instructions.py

Needs valgrind (``apt-get install valgrind``; benchmarks/setup_peers.sh installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REQUEST = b"GET /small.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n"


def harness(root: str, requests: int) -> None:
    """Answer ``requests`` inline requests in this process (run under callgrind)."""
    from zcopy.serve.conn import Conn
    from zcopy.serve.server import Config, Server, listen

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    lst = listen("127.0.0.1", 0)
    server = Server(Config(root, max_requests=10**9), lst)
    server.files.ttl = 1e9  # the open file stays: every measured request is answered inline
    server.loop = loop
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    srv.setblocking(False)
    conn = Conn(srv, "bench", loop, server.limits)
    conn.answer = server._answer_now

    def response() -> int:
        """Read the whole first answer; its length (every answer is as long: the Date line's
        format is fixed), so the loop below reads by count, with no parsing of its own."""
        data = b""
        while b"\r\n\r\n" not in data:
            data += cli.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
        while len(body) < length:
            body += cli.recv(65536)
        return len(head) + 4 + length

    async def first() -> None:  # the task path opens the file and learns the target
        cli.sendall(REQUEST)
        await conn.fill()
        req = conn.reader.ready.popleft()
        conn.count_request(req)
        conn.responding()
        await server._respond(conn, req)
        conn.responded()

    loop.run_until_complete(first())
    size = response()
    conn.waiter = loop.create_future()
    readable, send, recv = conn._readable, cli.send, cli.recv
    for _ in range(requests):
        send(REQUEST)
        readable()
        if conn.waiter.done():
            raise SystemExit("a request was not answered inline: the count would be wrong")
        got = 0
        while got < size:
            got += len(recv(65536))
    cli.close()
    conn.close()
    lst.close()


def instructions(root: str, requests: int, out: Path) -> int:
    """Instructions callgrind counted for a harness run of ``requests`` requests."""
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, __file__, "--harness", root, str(requests)]
    # One string-hash seed for every run: randomised hashing moves the count by ~1.5%.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    run = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    m = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode or not m:
        raise SystemExit(f"callgrind failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return int(m[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=400, help="requests in the first run")
    ap.add_argument("--large", type=int, default=1400, help="requests in the second run")
    ap.add_argument("--harness", nargs=2, metavar=("ROOT", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.harness:
        harness(args.harness[0], int(args.harness[1]))
        return 0
    if not shutil.which("valgrind"):
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="zcopy-instr-") as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        (root / "small.bin").write_bytes(os.urandom(4096))
        small = instructions(str(root), args.small, Path(tmp) / "small.out")
        large = instructions(str(root), args.large, Path(tmp) / "large.out")
    per = (large - small) / (args.large - args.small)
    import zcopy

    where = Path(zcopy.__file__).parent
    print(f"{per:,.0f} instructions per inline 4 KiB answer "
          f"({args.large} minus {args.small} requests; zcopy from {where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
