"""A/B of `zcopy serve` between two git revisions on the happy path: 4 KiB req/s and CPU per GiB.

Both revisions are exported with ``git archive`` and served side by side (the server pinned
to CPU 0, wrk and the download client to CPU 1); within every repeat they take turns, and
the order alternates, so background load hurts both alike. Medians of the repeats.

    flock /tmp/zcopy-bench.lock .venv/bin/python benchmarks/serve_ab.py 61c5985 6b51821

1. requests/s: ``wrk -t1 -c64 -d10s`` on a 4 KiB file, keep-alive;
2. server CPU (utime + stime of the server process) per GiB: a 512 MiB file downloaded
   4 times per repeat with ``Connection: close`` by a client reading into one 1 MiB buffer.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def export(rev: str, dest: Path) -> Path:
    """``git archive REV src`` unpacked under ``dest``; return its src directory.

    A ``REV`` that is a directory is taken as a ``src`` directory as it is.
    """
    if Path(rev).is_dir():
        return Path(rev).resolve()
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    tar = dest / f"{rev}.tar"
    tar.write_bytes(data)
    out = dest / rev
    with tarfile.open(tar) as t:
        t.extractall(out, filter="data")
    return out / "src"


class Server:
    """``python -m zcopy.serve`` from one exported tree, pinned to CPU 0."""

    def __init__(self, src: Path, site: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(src), PYTHONUNBUFFERED="1")
        cmd = ["taskset", "-c", "0", sys.executable, "-m", "zcopy.serve", str(site), "--port", "0"]
        # Newer revisions log each request by default; older ones know no --no-access-log.
        for extra in (["--no-access-log"], []):
            self.proc = subprocess.Popen(
                cmd + extra, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().decode()
            m = re.search(r":(\d+)/ \(pid (\d+)", line)
            if m is not None:
                break
            self.proc.wait(10)
        else:
            raise RuntimeError(f"server from {src} did not start: {line!r}")
        self.port, self.pid = int(m[1]), int(m[2])

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def rps(server: Server, seconds: int) -> tuple[float, float]:
    """wrk's requests/s, and the server's CPU microseconds per request meanwhile."""
    before = server.cpu()
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s",
         f"http://127.0.0.1:{server.port}/4k.bin"],
        check=True, capture_output=True, text=True,
    ).stdout
    cpu = server.cpu() - before
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    assert m is not None and n is not None, out
    return float(m[1]), cpu / int(n[1]) * 1e6


def download(port: int, size: int) -> None:
    buf = bytearray(MiB)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: ab\r\nConnection: close\r\n\r\n")
        got = 0
        while n := s.recv_into(buf):
            got += n
    assert got > size, got  # the head, then the whole body


def cpu_per_gib(server: Server, size: int, count: int) -> float:
    before = server.cpu()
    for _ in range(count):
        download(server.port, size)
    return (server.cpu() - before) / (count * size / (1024 * MiB))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", help="git revision (or a src directory)")
    ap.add_argument("after", help="git revision (or a src directory)")
    ap.add_argument("more", nargs="*", help="further revisions to compare")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds")
    ap.add_argument("--size", type=int, default=512, help="big file MiB")
    ap.add_argument("--per-rep", type=int, default=4)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("serve_ab: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {1})
    size = args.size * MiB
    with tempfile.TemporaryDirectory(prefix="zcopy-serve-ab-") as tmp_name:
        tmp = Path(tmp_name)
        site = tmp / "site"
        site.mkdir()
        (site / "4k.bin").write_bytes(os.urandom(4096))
        with open(site / "big.bin", "wb") as f:
            for _ in range(args.size):
                f.write(os.urandom(MiB))
        revs = (args.before, args.after, *args.more)
        servers = {rev: Server(export(rev, tmp), site) for rev in revs}
        results: dict[str, dict[str, list[float]]] = {
            r: {"rps": [], "us": [], "cpu": []} for r in revs
        }
        try:
            for s in servers.values():  # warm up: caches, page cache, first connections
                rps(s, 1)
                cpu_per_gib(s, size, 1)
            for i in range(args.reps):
                order = revs[i % len(revs):] + revs[: i % len(revs)]
                for rev in order:
                    rate, us = rps(servers[rev], args.duration)
                    results[rev]["rps"].append(rate)
                    results[rev]["us"].append(us)
                    time.sleep(0.5)
                for rev in order:
                    results[rev]["cpu"].append(cpu_per_gib(servers[rev], size, args.per_rep))
                last = {rev: {k: v[-1] for k, v in results[rev].items()} for rev in revs}
                print(f"repeat {i + 1}: " + "; ".join(
                    f"{rev} {x['rps']:.0f} req/s {x['us']:.1f} us/req {x['cpu']:.3f} s/GiB"
                    for rev, x in last.items()), flush=True)
        finally:
            for s in servers.values():
                s.stop()
    print()
    print("| revision | 4 KiB req/s (median) | runs | server CPU us/req "
          "| CPU s/GiB (median) | runs |")
    print("|---|---:|---|---:|---:|---|")
    for rev in revs:
        r = results[rev]
        print(
            f"| {rev} | {statistics.median(r['rps']):.0f} | "
            + " ".join(f"{x:.0f}" for x in r["rps"])
            + f" | {statistics.median(r['us']):.1f} | {statistics.median(r['cpu']):.3f} | "
            + " ".join(f"{x:.3f}" for x in r["cpu"]) + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
