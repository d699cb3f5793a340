"""The kernel's price of a small keep-alive answer, two ways, with no HTTP code around it.

Why ``zcopy serve`` sends small bodies with their head (docs/serve.md, "Small bodies"): a
minimal asyncio server answers every request it receives with a fixed head and a file's
body, either

* ``sendfile``: the head with ``MSG_MORE``, then ``os.sendfile`` of the file, or
* ``sendmsg``: ``os.pread`` of the file, then one ``sendmsg`` of head and body,

after one ``fstat`` each (as the real server's change detection). Nothing is parsed, so
the difference is the kernel's and the two syscall paths'. The server is pinned to the
first CPU, ``wrk -t1 -c32`` to the second; server CPU per request (utime and stime from
``/proc/PID/stat``) over a timed run, the modes taking turns within each repeat; medians.

    flock /tmp/zcopy-bench.lock .venv/bin/python benchmarks/small_body_floor.py
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import rotated, stop_group, wait_listening

from zcopy.tools._proc import free_port

SERVER = r'''
import asyncio, os, socket, sys
mode, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
head = (b"HTTP/1.1 200 OK\r\nServer: floor\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % size)
more = getattr(socket, "MSG_MORE", 0)

async def main():
    loop = asyncio.get_running_loop()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port)); ls.listen(128); ls.setblocking(False)

    def accepted():
        s, _ = ls.accept()
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.fileno()

        def readable():
            try:
                data = s.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(f); s.close(); return
            try:
                os.fstat(fd)
                if mode == "sendmsg":
                    s.sendmsg((head, os.pread(fd, size + 1, 0)))
                else:
                    s.send(head, more)
                    os.sendfile(f, fd, 0, size)
            except OSError:
                loop.remove_reader(f); s.close()
        loop.add_reader(f, readable)

    loop.add_reader(ls.fileno(), accepted)
    await asyncio.Event().wait()

asyncio.run(main())
'''
MODES = ("sendfile", "sendmsg")
_CPUS = sorted(os.sched_getaffinity(0))


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _wrk(port: int, seconds: float) -> int:
    argv = ["taskset", "-c", str(_CPUS[-1]), "wrk", "-t1", "-c32", f"-d{seconds:g}s",
            f"http://127.0.0.1:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    done = re.search(r"(\d+) requests in", out)
    if not done:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    return int(done[1])


def one(mode: str, path: Path, seconds: float) -> tuple[float, float]:
    """(requests/s, server CPU µs per request) of one run."""
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", str(_CPUS[0]), sys.executable, "-c", SERVER, mode, str(port),
         str(path)], start_new_session=True)
    try:
        wait_listening(port, proc)
        _wrk(port, 1)  # warm up
        before = _cpu_ticks(proc.pid)
        done = _wrk(port, seconds)
        ticks = _cpu_ticks(proc.pid) - before
    finally:
        stop_group(proc)
    hz = os.sysconf("SC_CLK_TCK")
    return done / seconds, ticks / hz / done * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[4096, 16384, 65536])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    if not shutil.which("wrk") or len(_CPUS) < 2:
        print("needs wrk and two CPUs", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="zcopy-floor-"))
    try:
        print("| body | way | req/s (median) | server CPU µs/request (median) | min-max |")
        print("|--:|---|--:|--:|--:|")
        for size in args.sizes:
            path = tmp / f"{size}.bin"
            path.write_bytes(os.urandom(size))
            runs: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
            for rep in range(args.reps):
                for mode in rotated(list(MODES), rep):
                    runs[mode].append(one(mode, path, args.duration))
            for mode in MODES:
                rps = statistics.median(r for r, _ in runs[mode])
                cpu = [c for _, c in runs[mode]]
                print(f"| {size // 1024} KiB | {mode} | {rps:.0f} | {statistics.median(cpu):.1f} "
                      f"| {min(cpu):.1f}-{max(cpu):.1f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
