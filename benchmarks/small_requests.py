"""Small files, keep-alive: `zcopy serve` beside nginx and the Python servers, 1 and 2 workers.

For a 4 KiB and a 64 KiB file, ``wrk -t1 -c32`` requests/s (medians over
repeats, peers taking turns within each repeat, with min-max spread), zcopy's
ratio to each peer paired repeat by repeat (median and spread of the per-repeat
ratios: a drift of the machine's speed cancels within a repeat), then the
syscalls per request of each server (``strace -c -f`` attached to its process
tree during a short wrk run, divided by the requests wrk completed). The
servers and their settings are benchmarks/serve_bench.py's; nginx has
``open_file_cache`` on there; ``zcopy serve --loop uvloop`` is one more row
when uvloop is installed (the default loop is asyncio's). With one worker the
servers run on CPU 0 and wrk on CPU 1; with two workers (`zcopy serve --workers 2`, nginx
``worker_processes 2``; the Python peers have no worker option here and stay
one process) the servers may use both CPUs and so does wrk. Run under the
benchmark lock:

    flock /tmp/zcopy-bench.lock .venv/bin/python benchmarks/small_requests.py --out small.json

The Markdown table (docs/serve.md, "Small files") is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import serve_bench as sb
from _common import rotated

from zcopy.tools._proc import descendants, free_port, median, spread

SIZES = {"4 KiB": sb.SMALL, "64 KiB": "medium.bin"}
_ALL = sorted(os.sched_getaffinity(0))
ZCOPY_UVLOOP = "zcopy serve --loop uvloop"


NGINX_PLAIN = "nginx, no open_file_cache"


def _nginx_plain(nginx: sb.Server, root: Path, tmp: Path) -> sb.Server:
    """nginx as installed: no ``open_file_cache`` (off by default), so an open, an fstat and a
    close per request; serve_bench's nginx keeps fds and metadata (up to 60 s unchecked)."""
    home = tmp / "nginx-plain"
    home.mkdir(exist_ok=True)
    p = free_port()
    cfg = sb.nginx_config(home, root, p)
    text = cfg.read_text()
    assert "open_file_cache" in text, "serve_bench's nginx config changed: update this"
    cfg.write_text(text.replace("  open_file_cache max=1000 inactive=20s;\n", ""))
    argv = ["nginx", "-p", f"{home}/", "-e", f"{home}/nginx-error.log", "-c", str(cfg)]
    note = nginx.note.replace("open_file_cache", "no open_file_cache")
    return sb.Server(NGINX_PLAIN, argv, p, note=note)


def servers(root: Path, tmp: Path) -> list[sb.Server | str]:
    """serve_bench's servers, nginx once more without ``open_file_cache``, and ``zcopy serve
    --loop uvloop`` when uvloop is installed."""
    found = list(sb.servers(root, tmp))
    nginx = next((s for s in found if isinstance(s, sb.Server) and s.name == sb.NGINX), None)
    if nginx is not None:
        found.insert(found.index(nginx) + 1, _nginx_plain(nginx, root, tmp))
    zc = next((s for s in found if isinstance(s, sb.Server) and s.name == sb.ZCOPY), None)
    if zc is None:
        return found
    if importlib.util.find_spec("uvloop") is None:
        return [*found, f"{ZCOPY_UVLOOP}: uvloop is not installed"]
    p = free_port()
    argv = [*zc.argv, "--loop", "uvloop"]
    argv[argv.index("--port") + 1] = str(p)
    return [*found, sb.Server(ZCOPY_UVLOOP, argv, p, note=f"{zc.note}, uvloop")]


def _wrk(port: int, name: str, seconds: float, cpus: str) -> tuple[float, int]:
    """(requests/s, requests completed) of one wrk run."""
    argv = ["taskset", "-c", cpus, "wrk", "-t1", "-c32", f"-d{seconds:g}s",
            f"http://127.0.0.1:{port}/{name}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    if not rps or not done:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    return float(rps[1]), int(done[1])


def _syscalls_per_request(server: sb.Server, tmp: Path, cpus: str) -> float | None:
    """strace -c over the server's process tree during a 2 s wrk run: syscalls / requests."""
    out = tmp / f"strace-c-{server.port}.txt"
    pids = descendants(server.pid)
    argv = ["strace", "-c", "-f", "-o", str(out)]
    for pid in pids:
        argv += ["-p", str(pid)]
    tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # attached to every thread before the load starts
        _, done = _wrk(server.port, sb.SMALL, 2, cpus)
    finally:
        tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(30)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
    total = re.search(r"^100\.00\s+\S+\s+\S+\s+(\d+)", out.read_text(), re.M)
    return int(total[1]) / done if total and done else None


def _two_workers(server: sb.Server, tmp: Path) -> bool:
    """Turn a one-worker command into a two-worker one; False if the server has no such knob."""
    if server.name in (sb.ZCOPY, ZCOPY_UVLOOP):
        server.argv[server.argv.index("--workers") + 1] = "2"
        return True
    if server.name in (sb.NGINX, NGINX_PLAIN):
        cfg = Path(server.argv[server.argv.index("-c") + 1])
        cfg.write_text(cfg.read_text().replace("worker_processes 1;", "worker_processes 2;"))
        return True
    return False


def run(workers: int, root: Path, tmp: Path, reps: int, seconds: float) -> list[dict[str, Any]]:
    cpu = _ALL[0] if workers == 1 else None
    load = str(_ALL[1] if workers == 1 and len(_ALL) > 1 else ",".join(map(str, _ALL)))
    live: list[sb.Server] = []
    notes: dict[str, str] = {}
    try:
        (tmp / f"w{workers}").mkdir(exist_ok=True)
        for s in servers(root, tmp / f"w{workers}"):
            if isinstance(s, str):
                print(f"SKIP {s}", file=sys.stderr)
                continue
            if workers == 2 and not _two_workers(s, tmp):
                notes[s.name] = "one process"
            if not s.keepalive:
                notes[s.name] = "HTTP/1.0: a connection per request"
            sb.start(s, tmp / f"w{workers}", cpu)
            live.append(s)
        for s in live:
            sb.wait_ready(s)
        rps: dict[tuple[str, str], list[float | None]] = {}
        for rep in range(reps):
            for label, name in SIZES.items():
                for s in rotated(live, rep):
                    got, _ = _wrk(s.port, name, seconds, load)
                    rps.setdefault((s.name, label), []).append(got)
                    print(f"[{rep + 1}/{reps}] {workers}w {label} {s.name}: {got:.0f} req/s",
                          file=sys.stderr)
        per_req = {s.name: _syscalls_per_request(s, tmp, load) for s in live} if (
            shutil.which("strace")) else {}
    finally:
        for s in live:
            sb.stop(s)
    rows = []
    for s in live:
        row: dict[str, Any] = {"server": s.name, "workers": workers,
                               "note": notes.get(s.name, s.note),
                               "syscalls_per_request_4k": per_req.get(s.name)}
        for label in SIZES:
            xs = rps[(s.name, label)]
            row[f"rps {label}"] = median(xs)
            row[f"rps {label} spread"] = spread(xs)
            # zcopy's req/s over this server's, repeat by repeat (the same round of turns):
            # the machine's slow drifts cancel out of each pair, not out of two medians.
            zs = rps.get((sb.ZCOPY, label), [])
            pairs = [z / x for z, x in zip(zs, xs, strict=True) if z and x]
            row[f"zcopy ratio {label}"] = median(pairs) if pairs else None
            row[f"zcopy ratio {label} spread"] = spread(pairs) if pairs else None
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    zc = {r["workers"]: r for r in rows if r["server"] == sb.ZCOPY}
    lines = ["| server | workers | 4 KiB req/s (median) | spread | zcopy ÷ this, paired "
             "| 64 KiB req/s | spread | zcopy ÷ this, paired | syscalls / 4 KiB request |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        cells = [r["server"], str(r["workers"])]
        for label in SIZES:
            v, sp = r[f"rps {label}"], r[f"rps {label} spread"]
            ratio, rsp = r.get(f"zcopy ratio {label}"), r.get(f"zcopy ratio {label} spread")
            if ratio is None:  # a file from before the paired ratios: the ratio of medians
                base = zc.get(r["workers"], {}).get(f"rps {label}")
                ratio = base / v if v and base else None
            cells += [f"{v:.0f}" if v else "-",
                      f"{sp['min']:.0f}-{sp['max']:.0f}" if sp else "-",
                      (f"{ratio:.2f}x" + (f" ({rsp['min']:.2f}-{rsp['max']:.2f})" if rsp else ""))
                      if ratio else "-"]
        per = r["syscalls_per_request_4k"]
        cells.append(f"{per:.1f}" if per else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0, help="wrk seconds per run")
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed (benchmarks/setup_peers.sh)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="zcopy-small-"))
    tmp.chmod(0o755)  # nginx's workers run as another user: they must reach the files
    try:
        root = tmp / "www"
        root.mkdir()
        (root / sb.SMALL).write_bytes(os.urandom(4096))
        (root / SIZES["64 KiB"]).write_bytes(os.urandom(65536))
        (root / sb.BIG).write_bytes(b"")  # nginx_config and friends expect it to exist
        rows = [r for w in args.workers for r in run(w, root, tmp, args.reps, args.duration)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows))
    if args.out:
        doc = {"benchmark": "benchmarks/small_requests.py", "machine": sb.machine(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "parameters": vars(args) | {"out": str(args.out)}, "rows": rows}
        args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
