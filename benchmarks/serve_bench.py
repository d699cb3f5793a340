"""`zcopy serve` against nginx, aiohttp, uvicorn+Starlette and http.server, side by side.

All servers run at once, one worker each, pinned to CPU 0; the load (this
process, and wrk) runs on CPU 1. Peers take turns within every repeat, so a
noisy neighbour hurts all of them alike; compare ratios within one run, and
look at the spread over repeats. Four measurements:

1. ``cpu``: server CPU seconds per GiB downloading a 512 MiB file
   (utime + stime from /proc/PID/stat of the server's process tree, before and
   after the transfers only; schedstat run time of live threads as a finer cross-check,
   blind to http.server's exited per-request threads). The
   client is a plain Python socket reading into one 1 MiB buffer, the same for all.
2. ``rps``: 4 KiB file, keep-alive, ``wrk -t1 -c64 -d10s``: requests/s, and the
   server's CPU use meanwhile (below ~90% means the client, not the server, was the limit).
3. ``rss``: the server's RSS (VmRSS sampled, VmHWM after a reset) while 200
   clients download the 512 MiB file at once, for a bounded time.
4. ``strace``: strace attached to each running server while it serves the big file
   whole, a range of it, and the small file: for `zcopy serve` every body byte must be
   a ``sendfile`` and the file is never ``read``; the others show what they do instead.

Peers that are not installed are skipped with a message (install them with
benchmarks/setup_peers.sh). Full runs only under the benchmark lock:

    flock /tmp/zcopy-bench.lock .venv/bin/python benchmarks/serve_bench.py --out serve-bench

``--quick`` is a smoke run (small sizes, short durations) for tests/test_serve_bench.py.
The table is printed; ``OUT/serve_bench.json`` and ``OUT/serve_bench.md`` are written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import ROOT, SRC, bench_lock, http_get, rotated, stop_group, tail, version

from zcopy.tools import _proc, strace
from zcopy.tools._proc import descendants, free_port, spread, tracer_of

HERE = Path(__file__).resolve().parent

SCHEMA = "zcopy-serve-bench/1"
GIB = 1 << 30
MIB = 1 << 20
# The first two CPUs this process may use: the servers' and the load's (CPUs 0 and 1 usually).
_ALLOWED = sorted(os.sched_getaffinity(0))
SERVER_CPU, CLIENT_CPU = (_ALLOWED[0], _ALLOWED[1]) if len(_ALLOWED) > 1 else (_ALLOWED[0], -1)
BIG, SMALL = "big.bin", "small.bin"
ZCOPY, NGINX, AIOHTTP, STARLETTE, HTTPSERVER = (
    "zcopy serve", "nginx", "aiohttp", "uvicorn+starlette", "http.server")
# Syscalls counted under strace: the data path plus what drives it, to compare per-GiB costs.
TRACED = (*strace.DATA_SYSCALLS, "epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "ppoll",
          "setsockopt", "openat", "close", "fstat", "newfstatat", "statx")
FILE_READS = ("read", "readv", "pread64", "preadv", "preadv2")


# ----------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    note: str = ""
    keepalive: bool = True  # http.server speaks HTTP/1.0: one request per connection
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def nginx_config(tmp: Path, root: Path, port: int) -> Path:
    """A one-worker nginx that serves ``root``, everything it writes inside ``tmp``."""
    cfg = tmp / "nginx.conf"
    temps = "\n".join(f"  {k}_temp_path {tmp}/{k};"
                      for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    cfg.write_text(f"""\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  access_log off;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  open_file_cache max=1000 inactive=20s;
  default_type application/octet-stream;
{temps}
  server {{
    listen 127.0.0.1:{port};
    root {root};
  }}
}}
""")
    return cfg


def servers(root: Path, tmp: Path) -> Iterator[Server | str]:
    """Each server's command line, or a string saying why it is skipped."""
    py = sys.executable
    p = free_port()
    # --max-requests: nginx below keeps a connection for 1,000,000 requests, the Python peers
    # for ever; zcopy's default (1,000, nginx's own default) would reconnect every 1,000.
    yield Server(ZCOPY, [py, "-m", "zcopy.serve", str(root), "--port", str(p),
                         "--bind", "127.0.0.1", "--workers", "1", "--no-access-log",
                         "--max-requests", "1000000"], p,
                 note="--workers 1, no access log, --max-requests 1000000 (as nginx's)")
    if shutil.which("nginx"):
        p = free_port()
        cfg = nginx_config(tmp, root, p)
        yield Server(NGINX, ["nginx", "-p", f"{tmp}/", "-e", f"{tmp}/nginx-error.log",
                             "-c", str(cfg)], p,
                     note=f"{_nginx_version()}: 1 worker, sendfile on, tcp_nopush on, "
                          "open_file_cache, access_log off")
    else:
        yield f"{NGINX}: not installed (run benchmarks/setup_peers.sh)"
    apps = str(HERE / "serve_peer_apps.py")
    if _has("aiohttp"):
        p = free_port()
        yield Server(AIOHTTP, [py, apps, "aiohttp", str(root), str(p)], p,
                     note=f"aiohttp {version('aiohttp')} web.FileResponse")
    else:
        yield f"{AIOHTTP}: not installed (pip install -e '.[peers]')"
    if _has("uvicorn") and _has("starlette"):
        p = free_port()
        loop = "uvloop" if _has("uvloop") else "asyncio"
        http = "httptools" if _has("httptools") else "h11"
        yield Server(STARLETTE, [py, apps, "starlette", str(root), str(p)], p,
                     note=f"uvicorn {version('uvicorn')} ({loop}, {http}) + "
                          f"starlette {version('starlette')} FileResponse")
    else:
        yield f"{STARLETTE}: not installed (pip install -e '.[peers]')"
    p = free_port()
    yield Server(HTTPSERVER, [py, "-m", "http.server", str(p), "--bind", "127.0.0.1",
                              "--directory", str(root)], p, keepalive=False,
                 note=f"Python {sys.version.split()[0]} stdlib, HTTP/1.0, thread per request")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _nginx_version() -> str:
    try:
        r = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
        return r.stderr.strip().removeprefix("nginx version: ")
    except (OSError, subprocess.SubprocessError):
        return "nginx"


def _pin(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def start(server: Server, tmp: Path, cpu: int | None, prefix: list[str] | None = None) -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONUNBUFFERED="1")
    server.log = tmp / f"{server.name.replace(' ', '_').replace('+', '_')}.log"
    with open(server.log, "ab") as log:
        server.proc = subprocess.Popen([*(prefix or []), *server.argv], env=env, stdout=log,
                                       stderr=log, stdin=subprocess.DEVNULL,
                                       preexec_fn=_pin(cpu), start_new_session=True)


def wait_ready(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        assert server.proc is not None
        if server.proc.poll() is not None:
            break
        try:
            status, n = http_get(server.port, f"/{SMALL}", bytearray(65536), timeout=2)
            if status == 200 and n == 4096:
                return
            last = RuntimeError(f"GET /{SMALL}: status {status}, {n} bytes")
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} not ready ({last}); log:\n{tail(server.log)}")


def stop(server: Server, timeout: float = 15) -> None:
    # nginx: SIGTERM is a fast shutdown; the Python servers take SIGTERM/SIGINT.
    if server.proc is not None:
        stop_group(server.proc, timeout)


# ----------------------------------------------------------------------------- clients


def median(xs: list[float]) -> float:
    """The median, NaN for none (a table cell, never a crash)."""
    m = _proc.median(xs)
    return float("nan") if m is None else m


def tree_cpu(pid: int) -> tuple[float, float]:
    """(utime + stime, schedstat run time) of the server's process tree, in seconds."""
    cpu = _proc.tree_cpu_of(pid)
    return cpu.ticks, cpu.run or 0.0


def cpu_busy(cpu: int) -> float:
    """Seconds CPU ``cpu`` has spent not idle since boot, whoever ran."""
    return _proc.cpu_times_of(cpu).busy


def tree_mem_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) summed over the server's process tree, KiB."""
    return _proc.memory_kib(descendants(pid))


# ----------------------------------------------------------------------------- 1. CPU/GiB


def measure_cpu(live: list[Server], size: int, per_rep: int, reps: int) -> dict[str, Any]:
    buf = bytearray(MIB)
    for s in live:  # warm: first-call costs, caches, the file in the page cache
        http_get(s.port, f"/{BIG}", buf)
    # per server, per repeat: (CPU s/GiB, schedstat s/GiB, GiB/s, others' share of the CPU)
    runs: dict[str, list[tuple[float, float, float, float]]] = {s.name: [] for s in live}
    retries: dict[str, int] = {}
    for i in range(reps):
        for s in rotated(live, i):
            for attempt in (1, 2):
                t0, (c0, r0), b0 = time.monotonic(), tree_cpu(s.pid), cpu_busy(SERVER_CPU)
                try:
                    for _ in range(per_rep):
                        status, n = http_get(s.port, f"/{BIG}", buf)
                        if status != 200 or n != size:
                            raise ConnectionError(f"GET /{BIG} gave {status}, {n} bytes")
                    break
                except OSError as exc:
                    # One retry of the repeat: a hiccup of a shared machine is not a result;
                    # a server that fails twice is (the run stops and says so).
                    print(f"  {s.name}: {exc!r} (attempt {attempt})", flush=True)
                    retries[s.name] = retries.get(s.name, 0) + 1
                    if attempt == 2:
                        raise RuntimeError(f"{s.name}: downloads failed twice: {exc!r}") from exc
            c1, r1 = tree_cpu(s.pid)
            wall = time.monotonic() - t0
            other = (cpu_busy(SERVER_CPU) - b0 - (c1 - c0)) / wall
            gib = size * per_rep / GIB
            runs[s.name].append(((c1 - c0) / gib, (r1 - r0) / gib, gib / wall, other))
        print(f"  cpu repeat {i + 1}/{reps}: " + ", ".join(
            f"{n} {r[-1][0]:.3f}" for n, r in runs.items()), flush=True)
    rows = []
    for s in live:
        r = runs[s.name]
        rows.append({
            "name": s.name,
            "cpu_s_per_gib": round(median([x[0] for x in r]), 4),
            "runs": [round(x[0], 4) for x in r],
            "sched_s_per_gib": round(median([x[1] for x in r]), 4),
            "sched_runs": [round(x[1], 4) for x in r],
            "gib_per_s": round(median([x[2] for x in r]), 3),
            "cpu0_other_util": round(median([max(0.0, x[3]) for x in r]), 3),
            "retried_repeats": retries.get(s.name, 0),
        })
    _paired_ratios(rows, runs, NGINX, "ratio_to_nginx", lambda x: x[0])
    _paired_ratios(rows, runs, NGINX, "sched_ratio_to_nginx", lambda x: x[1])
    for row in rows:
        if row["name"] == HTTPSERVER:  # its work is in per-request threads gone by now
            row["sched_s_per_gib"] = row["sched_ratio_to_nginx"] = None
    return {"file_bytes": size, "transfers_per_repeat": per_rep, "repeats": reps,
            "client": "Python socket, recv_into one 1 MiB buffer, Connection: close",
            "rows": rows}


def _paired_ratios(rows: list[dict[str, Any]], runs: dict[str, list[Any]], base: str,
                   key: str, value: Callable[[Any], float]) -> None:
    """Per-repeat ratios to ``base`` (paired: same repeat, neighbouring turns): median, range."""
    if base not in runs:
        for row in rows:
            row[key] = None
        return
    for row in rows:
        pairs = [value(a) / value(b) for a, b in zip(runs[row["name"]], runs[base], strict=True)
                 if value(b) > 0]
        row[key] = round(median(pairs), 3) if pairs else None
        row[key + "_spread"] = spread(pairs)


# ----------------------------------------------------------------------------- 2. req/s


def wrk_run(port: int, conns: int, seconds: float) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--latency",
            f"http://127.0.0.1:{port}/{SMALL}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    res: dict[str, Any] = {"rps": float(m[1])}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in sock.groups()) if sock else 0
    non2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(non2[1]) if non2 else 0
    for pct in ("50", "99"):
        lat = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if lat:
            res[f"p{pct}_ms"] = round(float(lat[1]) * {"us": 1e-3, "ms": 1, "s": 1e3}[lat[2]], 3)
    return res


def measure_rps(live: list[Server], conns: int, seconds: float, reps: int) -> dict[str, Any]:
    ka = [s for s in live if s.keepalive]
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in ka}
    for s in ka:  # warm
        wrk_run(s.port, conns, min(1.0, seconds))
    for i in range(reps):
        for s in rotated(ka, i):
            t0, (c0, _), b0 = time.monotonic(), tree_cpu(s.pid), cpu_busy(SERVER_CPU)
            one = wrk_run(s.port, conns, seconds)
            c1, _ = tree_cpu(s.pid)
            wall = time.monotonic() - t0
            other = max(0.0, cpu_busy(SERVER_CPU) - b0 - (c1 - c0)) / wall
            one["cpu0_other_util"] = round(other, 3)
            one["server_cpu_util"] = round((c1 - c0) / wall, 3)
            one["server_cpu_us_per_req"] = round((c1 - c0) / max(1.0, one["rps"] * wall) * 1e6, 2)
            runs[s.name].append(one)
        print(f"  rps repeat {i + 1}/{reps}: " + ", ".join(
            f"{n} {r[-1]['rps']:.0f}" for n, r in runs.items()), flush=True)
    rows: list[dict[str, Any]] = []
    for s in ka:
        r = runs[s.name]
        rows.append({
            "name": s.name,
            "rps": round(median([x["rps"] for x in r]), 1),
            "runs": [x["rps"] for x in r],
            "server_cpu_util": round(median([x["server_cpu_util"] for x in r]), 3),
            "server_cpu_us_per_req": round(median([x["server_cpu_us_per_req"] for x in r]), 2),
            "cpu0_other_util": round(median([x["cpu0_other_util"] for x in r]), 3),
            "p50_ms": median([x.get("p50_ms", float("nan")) for x in r]),
            "p99_ms": median([x.get("p99_ms", float("nan")) for x in r]),
            "errors": sum(x["socket_errors"] + x["non_2xx"] for x in r),
        })
    # zcopy's req/s over each peer's, paired by repeat.
    if ZCOPY in runs:
        for row in rows:
            pairs = [a["rps"] / b["rps"] for a, b in zip(runs[ZCOPY], runs[row["name"]],
                                                         strict=True) if b["rps"] > 0]
            row["zcopy_over_this"] = round(median(pairs), 3) if pairs else None
            row["zcopy_over_this_spread"] = spread(pairs)
    return {"file_bytes": 4096, "connections": conns, "duration_s": seconds, "repeats": reps,
            "client": f"wrk -t1 -c{conns} -d{seconds:g}s (keep-alive)", "rows": rows}


# ----------------------------------------------------------------------------- 3. RSS


async def crowd(port: int, clients: int, seconds: float) -> dict[str, int]:
    """``clients`` connections each downloading the big file, for ``seconds``; then RST."""
    loop = asyncio.get_running_loop()
    req = f"GET /{BIG} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    stop_at = loop.time() + seconds
    socks: list[socket.socket] = []
    got: Counter[str] = Counter()

    async def one() -> None:
        s = socket.socket()
        s.setblocking(False)
        socks.append(s)
        buf = bytearray(1 << 16)  # one each: another client's recv may land before we look
        try:
            await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 10)
            await loop.sock_sendall(s, req)
            got["connected"] += 1
            first, got_body = True, False
            while (left := stop_at - loop.time()) > 0:
                n = await asyncio.wait_for(loop.sock_recv_into(s, buf), left)
                if not n:
                    got["closed_early"] += 1
                    return
                if first:
                    got["responses_started"] += bytes(buf[:12]).startswith(b"HTTP/1.1 200")
                    first = False
                elif n and not got_body:
                    got["receiving_body"] += 1
                    got_body = True
                got["bytes"] += n
        except TimeoutError:
            pass
        except OSError:
            got["errors"] += 1

    await asyncio.gather(*(one() for _ in range(clients)))
    for s in socks:  # abort, so the server does not keep sending to nobody
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    return dict(got)


def measure_rss(live: list[Server], clients: int, seconds: float) -> dict[str, Any]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = []
    for s in live:
        base_rss, _ = tree_mem_kib(s.pid)
        hwm_reset = _proc.reset_peak_memory(descendants(s.pid))
        peak = [base_rss]
        done = threading.Event()

        def sample(pid: int = s.pid, peak: list[int] = peak, done: threading.Event = done) -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], tree_mem_kib(pid)[0])

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            got = asyncio.run(crowd(s.port, clients, seconds))
        finally:
            done.set()
            t.join(5)
        _, hwm = tree_mem_kib(s.pid)
        time.sleep(0.5)
        after_rss, _ = tree_mem_kib(s.pid)
        try:
            alive = http_get(s.port, f"/{SMALL}", bytearray(65536), timeout=10) == (200, 4096)
        except OSError:
            alive = False
        row = {"name": s.name, "baseline_mib": round(base_rss / 1024, 1),
               "peak_rss_mib": round(peak[0] / 1024, 1),
               "hwm_mib": round(hwm / 1024, 1) if hwm_reset else None,
               "after_mib": round(after_rss / 1024, 1), "answers_after": alive,
               "clients_connected": got.get("connected", 0),
               "responses_started": got.get("responses_started", 0),
               "receiving_body": got.get("receiving_body", 0),
               "client_errors": got.get("errors", 0) + got.get("closed_early", 0),
               "gib_received": round(got.get("bytes", 0) / GIB, 2)}
        rows.append(row)
        print(f"  rss {s.name}: peak {row['peak_rss_mib']} MiB (baseline "
              f"{row['baseline_mib']}), {row['responses_started']}/{clients} answered, "
              f"{row['receiving_body']} got body bytes, "
              f"{row['gib_received']} GiB in {seconds:g}s", flush=True)
    return {"clients": clients, "duration_s": seconds, "file": BIG, "rows": rows}


# ----------------------------------------------------------------------------- 4. strace


def measure_strace(server: Server, tmp: Path, root: Path, size: int) -> dict[str, Any]:
    """Attach strace to the running server; fetch the big file whole, a range, the small file.

    Only the serving is traced (not start-up), so the counts compare servers directly.
    """
    out = tmp / f"strace-{server.name.split()[0]}.out"
    pids = descendants(server.pid)
    tracer = subprocess.Popen(strace.attach_command(str(out), pids, TRACED),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    buf = bytearray(MIB)
    first, length = 1000, min(8 * MIB, size // 2)
    try:
        deadline = time.monotonic() + 20
        while not all(tracer_of(p) for p in pids):
            if time.monotonic() > deadline or tracer.poll() is not None:
                err = tracer.stderr.read().decode(errors="replace") if tracer.stderr else ""
                return {"skipped": f"strace could not attach: {err.strip()[-200:]}"}
            time.sleep(0.05)
        full = http_get(server.port, f"/{BIG}", buf)
        part = http_get(server.port, f"/{BIG}", buf,
                        extra=f"Range: bytes={first}-{first + length - 1}\r\n")
        small = [http_get(server.port, f"/{SMALL}", buf) for _ in range(3)]
        time.sleep(0.3)  # http.server: let the last request's thread finish
    finally:
        tracer.send_signal(signal.SIGINT)  # detach; the server runs on
        try:
            tracer.wait(20)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
    expected = (size, length, 4096)
    got = (full[1], part[1], small[0][1])
    calls = strace.parse_lines(out.read_text().splitlines())
    data_dir = str(root)
    on_file = [c for c in calls if any(data_dir in w for _, w in c.fds)]
    on_tcp = [c for c in calls if any(w.startswith("TCP") for _, w in c.fds)]
    on_big = [c for c in on_file if any(w.endswith("/" + BIG) for _, w in c.fds)]
    on_small = [c for c in on_file if any(w.endswith("/" + SMALL) for _, w in c.fds)]
    sendfile = [c for c in on_big if c.name in ("sendfile", "sendfile64")]
    reads = [c for c in on_big if c.name in FILE_READS and c.ok and c.ret]
    # zcopy serve reads a small file's body (--small-body) at each kept-alive request and sends
    # it with the head in one sendmsg; every other server's small bodies are for comparison.
    small_reads = [c for c in on_small if c.name in FILE_READS and c.ok and c.ret]
    small_sendfile = sum(c.ret or 0 for c in on_small
                         if c.name in ("sendfile", "sendfile64") and c.ok)
    other_tcp_bytes = sum(c.ret or 0 for c in on_tcp if c.ok and c.name not in (
        "sendfile", "sendfile64", "splice", "recvfrom", "recvmsg", "recv", "read", "readv"))
    body = size + length  # the big file's bodies: sendfile, every byte
    by_name = Counter(c.name for c in calls)
    return {
        "requests": {"full": f"GET /{BIG} ({size} bytes)",
                     "range": f"bytes={first}-{first + length - 1}",
                     "small": f"3 x GET /{SMALL}"},
        "statuses": [full[0], part[0], *(s[0] for s in small)],
        "bodies_ok": got == expected and full[0] == 200 and part[0] == 206,
        "body_bytes_expected": body,
        "sendfile_calls": len(sendfile),
        "sendfile_bytes": sum(c.ret or 0 for c in sendfile if c.ok),
        "sendfile_eagain": sum(1 for c in sendfile if c.error == "EAGAIN"),
        "range_sendfile_from_offset": any(f"[{first}]" in c.args for c in sendfile),
        "file_reads": len(reads),
        "file_read_bytes": sum(c.ret or 0 for c in reads),
        "small_sendfile_bytes": small_sendfile,
        "small_file_reads": len(small_reads),
        "non_sendfile_tcp_bytes": other_tcp_bytes,
        "syscalls": dict(by_name.most_common()),
    }


# ----------------------------------------------------------------------------- profile


def profile_rps(server: Server, out_dir: Path, conns: int, seconds: float) -> dict[str, Any]:
    """py-spy over `zcopy serve` during a wrk run: where its Python time goes (not timed).

    Sampling stops the server for each sample (consistent stacks), so this run's req/s
    is not a result. Shares are of samples; a function's share of syscall time shows
    as the Python line that made the call.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(spy):
        return {"skipped": "py-spy not installed (pip install -e '.[flamegraph]')"}
    raw = out_dir / "zcopy-serve-4k.folded"
    p = subprocess.Popen([spy, "record", "-r", "400", "-d", f"{seconds:g}", "-f", "raw",
                          "-o", str(raw), "-p", str(server.pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    wrk_run(server.port, conns, seconds)
    _, err = p.communicate(timeout=seconds + 60)
    if p.returncode != 0 or not raw.exists():
        return {"skipped": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or not stack:
            continue
        frames = stack.split(";")
        funcs = [re.sub(r":\d+\)$", ")", f) for f in frames]  # "f (file:12)" -> "f (file)"
        count = int(n)
        total += count
        self_t[funcs[-1]] += count
        lines[frames[-1]] += count
        for f in set(funcs):
            incl[f] += count
    total = max(total, 1)
    return {
        "folded": raw.name,
        "samples": total,
        "top_self": [(f, round(n / total, 3)) for f, n in self_t.most_common(20)],
        "top_self_lines": [(f, round(n / total, 3)) for f, n in lines.most_common(20)],
        "top_inclusive": [(f, round(n / total, 3)) for f, n in incl.most_common(40)],
    }


# ----------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    """The machine's facts (zcopy.tools._proc.facts) and the peers' versions."""
    wrk = shutil.which("wrk")
    return {
        **_proc.facts(),
        "nginx": _nginx_version() if shutil.which("nginx") else None,
        "wrk": subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("[")[0]
        .strip() if wrk else None,
        "packages": {d: version(d) for d in ("httptools", "aiohttp", "uvicorn", "starlette")},
        "loadavg_start": os.getloadavg(),
        "zcopy_commit": _git("rev-parse", "--short", "HEAD"),
        "zcopy_tree_dirty": bool(_git("status", "--porcelain", "--", "src")),
    }


def _git(*argv: str) -> str:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def make_files(root: Path, size: int) -> None:
    root.mkdir()
    root.chmod(0o755)  # nginx workers run as an unprivileged user
    root.parent.chmod(0o755)
    chunk = os.urandom(MIB)
    with open(root / BIG, "wb") as f:
        left = size
        while left:
            left -= f.write(chunk[:min(left, MIB)])
    (root / SMALL).write_bytes(os.urandom(4096))
    for name in (BIG, SMALL):
        (root / name).chmod(0o644)


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against this run; a --quick run's figures are not judged."""
    out: list[dict[str, Any]] = []
    judge = not res["quick"]

    def row(section: str, name: str) -> dict[str, Any] | None:
        sec = res.get(section)
        rows = sec.get("rows", []) if isinstance(sec, dict) else []
        return next((r for r in rows if r["name"] == name), None)

    z = row("cpu", ZCOPY)
    if z and z.get("ratio_to_nginx") is not None:
        v = z["ratio_to_nginx"]
        out.append({"target": "CPU/GiB zcopy / nginx <= 1.1", "value": v,
                    "met": v <= 1.1 if judge else None})
    for peer in (AIOHTTP, STARLETTE):
        r = row("rps", peer)
        if r and r.get("zcopy_over_this") is not None:
            v = r["zcopy_over_this"]
            out.append({"target": f"req/s zcopy / {peer} >= 2", "value": v,
                        "met": v >= 2 if judge else None})
    n = row("rps", NGINX)
    if n and n.get("zcopy_over_this") is not None:
        out.append({"target": "req/s zcopy / nginx (reported)", "value": n["zcopy_over_this"],
                    "met": None})
    r = row("rss", ZCOPY)
    if r:
        v = max(r["peak_rss_mib"], r["hwm_mib"] or 0)
        out.append({"target": f"RSS with {res['rss']['clients']} clients < 60 MiB", "value": v,
                    "met": v < 60 if judge else None})
    st = res.get("strace", {}).get(ZCOPY)
    if isinstance(st, dict) and "file_reads" in st:
        ok = (st["file_reads"] == 0 and st["sendfile_bytes"] == st["body_bytes_expected"]
              and st["bodies_ok"] and st.get("small_file_reads", 0) <= 3)
        out.append({"target": "strace: all body bytes of the big file by sendfile, no reads of "
                              "it; the 4 KiB file by sendfile or read with its head sent",
                    "value": f"{st['sendfile_bytes']}/{st['body_bytes_expected']} bytes by "
                             f"sendfile, {st['file_reads']} reads; 4 KiB file: "
                             f"{st.get('small_sendfile_bytes', 0)} bytes by sendfile, "
                             f"{st.get('small_file_reads', 0)} read(s)", "met": ok})
    return out


def table(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"{res['started_utc']}: {m['cpus']} x {m['cpu']}"
             f"{' (VM)' if m['hypervisor'] else ''}, {m['mem_gib']} GiB, Linux {m['kernel']}, "
             f"{m['os']}, {m['python']}, {m['nginx'] or 'no nginx'}, "
             f"{m['wrk'] or 'no wrk'}; zcopy {m['zcopy_commit'] or '?'}"
             f"{' (src modified)' if m['zcopy_tree_dirty'] else ''}"
             f"; load average at start {m['loadavg_start'][0]:.2f}", ""]
    cpu = res.get("cpu")
    if isinstance(cpu, dict):
        lines += [f"### Server CPU per GiB, {cpu['file_bytes'] >> 20} MiB file "
                  f"({cpu['repeats']} repeats x {cpu['transfers_per_repeat']})", "",
                  "| server | CPU s/GiB (median) | runs | x nginx (range) | "
                  "schedstat x nginx | GiB/s | others on CPU 0 |",
                  "|---|---:|---|---:|---:|---:|---:|"]
        for r in cpu["rows"]:
            ratio = (f"{r['ratio_to_nginx']:.2f} ({r['ratio_to_nginx_spread']['min']:.2f}-"
                     f"{r['ratio_to_nginx_spread']['max']:.2f})" if r["ratio_to_nginx"] else "-")
            sr = f"{r['sched_ratio_to_nginx']:.2f}" if r["sched_ratio_to_nginx"] else "-"
            lines.append(f"| {r['name']} | {r['cpu_s_per_gib']:.3f} | "
                         f"{' '.join(f'{x:.3f}' for x in r['runs'])} | {ratio} | {sr} | "
                         f"{r['gib_per_s']:.2f} | {r['cpu0_other_util']:.0%} |")
        lines.append("")
    rps = res.get("rps")
    if isinstance(rps, dict) and "rows" in rps:
        lines += [f"### 4 KiB file, keep-alive, {rps['client']}, {rps['repeats']} repeats", "",
                  "| server | req/s (median) | runs | zcopy / this (range) | server CPU | "
                  "CPU us/req | p99 ms | errors | others on CPU 0 |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in rps["rows"]:
            zr = r.get("zcopy_over_this")
            ratio = (f"{zr:.2f} ({r['zcopy_over_this_spread']['min']:.2f}-"
                     f"{r['zcopy_over_this_spread']['max']:.2f})" if zr else "-")
            lines.append(f"| {r['name']} | {r['rps']:.0f} | "
                         f"{' '.join(f'{x:.0f}' for x in r['runs'])} | {ratio} | "
                         f"{r['server_cpu_util']:.0%} | {r['server_cpu_us_per_req']:.1f} | "
                         f"{r['p99_ms']:.2f} | {r['errors']} | {r['cpu0_other_util']:.0%} |")
        lines.append("")
    rss = res.get("rss")
    if isinstance(rss, dict):
        lines += [f"### RSS, {rss['clients']} clients downloading {BIG} for "
                  f"{rss['duration_s']:g} s", "",
                  "| server | baseline MiB | peak VmRSS MiB | VmHWM MiB | receiving a body | "
                  "GiB received |", "|---|---:|---:|---:|---:|---:|"]
        for r in rss["rows"]:
            lines.append(f"| {r['name']} | {r['baseline_mib']} | {r['peak_rss_mib']} | "
                         f"{r['hwm_mib']} | {r['receiving_body']}/{rss['clients']} | "
                         f"{r['gib_received']} |")
        lines.append("")
    st = res.get("strace")
    if isinstance(st, dict) and st:
        lines += ["### strace (whole file + one range + 3 x 4 KiB)", "",
                  "| server | body bytes by sendfile | sendfile calls | EAGAIN | reads of the "
                  "file | other bytes to TCP (heads) | range sent from offset |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for name, r in st.items():
            if "skipped" in r:
                lines.append(f"| {name} | skipped: {r['skipped']} |||||")
                continue
            lines.append(f"| {name} | {r['sendfile_bytes']}/{r['body_bytes_expected']} | "
                         f"{r['sendfile_calls']} | {r['sendfile_eagain']} | {r['file_reads']} "
                         f"| {r['non_sendfile_tcp_bytes']} | {r['range_sendfile_from_offset']} |")
        lines.append("")
    if res.get("targets"):
        lines += ["### Targets", "", "| target | value | met |", "|---|---|---|"]
        for t in res["targets"]:
            met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
            lines.append(f"| {t['target']} | {t['value']} | {met} |")
        lines.append("")
    for s in res.get("skipped", []):
        lines.append(f"skipped: {s}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("serve-bench"),
                    help="directory for serve_bench.json and serve_bench.md")
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, short runs")
    ap.add_argument("--size", type=int, help="big file bytes (default 512 MiB; quick 16 MiB)")
    ap.add_argument("--reps", type=int, help="CPU/GiB repeats (default 5; quick 2)")
    ap.add_argument("--per-rep", type=int, help="downloads per CPU repeat (default 4; quick 1)")
    ap.add_argument("--rps-reps", type=int, help="wrk repeats (default 3; quick 1)")
    ap.add_argument("--duration", type=float, help="wrk seconds (default 10; quick 1)")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections")
    ap.add_argument("--clients", type=int, help="RSS clients (default 200; quick 20)")
    ap.add_argument("--rss-seconds", type=float, help="RSS test length (default 10; quick 1)")
    ap.add_argument("--only", action="append", help="run only servers whose name contains this")
    ap.add_argument("--skip", action="append", default=[],
                    choices=["cpu", "rps", "rss", "strace"], help="leave out a measurement")
    ap.add_argument("--profile", action="store_true",
                    help="also py-spy `zcopy serve` during an extra wrk run (not timed)")
    args = ap.parse_args()
    q = args.quick
    size = args.size or (16 * MIB if q else 512 * MIB)
    reps, per_rep = args.reps or (2 if q else 5), args.per_rep or (1 if q else 4)
    rps_reps, duration = args.rps_reps or (1 if q else 3), args.duration or (1.0 if q else 10.0)
    clients, rss_s = args.clients or (20 if q else 200), args.rss_seconds or (1.0 if q else 10.0)
    lock = bench_lock(q)
    facts = machine()  # before pinning: it counts the CPUs this process may use
    pin = CLIENT_CPU >= 0
    if pin:
        os.sched_setaffinity(0, {CLIENT_CPU})
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "schema": SCHEMA, "argv": sys.argv, "quick": q,
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": facts, "pinned": {"server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU}
        if pin else None, "servers": [], "skipped": [],
    }
    print(f"serve_bench: {size >> 20} MiB file; kernel {res['machine']['kernel']}; "
          f"{res['machine']['cpus']} CPUs; pinned {pin}", flush=True)
    with tempfile.TemporaryDirectory(prefix="zcopy-serve-bench-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "www"
        make_files(root, size)
        live: list[Server] = []
        try:
            for s in servers(root, tmp):
                if isinstance(s, str):
                    print(f"SKIP {s}", flush=True)
                    res["skipped"].append(s)
                    continue
                if args.only and not any(o in s.name for o in args.only):
                    continue
                start(s, tmp, SERVER_CPU if pin else None)
                live.append(s)
            for s in live:
                wait_ready(s)
                res["servers"].append({"name": s.name, "note": s.note, "pid": s.pid})
            run_all(res, args, live, tmp, root, size, reps, per_rep, rps_reps, duration,
                    clients, rss_s)
        finally:
            for s in live:
                stop(s)
            for s in live:
                if s.log and s.log.stat().st_size and s.name == ZCOPY:
                    res["zcopy_log_tail"] = tail(s.log)
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["finished_utc"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    res["targets"] = targets(res)
    text = table(res)
    print("\n" + text)
    (args.out / "serve_bench.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "serve_bench.md").write_text(text + "\n")
    print(f"\nwrote {args.out / 'serve_bench.json'} and serve_bench.md", flush=True)
    if lock:
        lock.close()
    return 0


def run_all(res: dict[str, Any], args: argparse.Namespace, live: list[Server], tmp: Path,
            root: Path, size: int, reps: int, per_rep: int, rps_reps: int, duration: float,
            clients: int, rss_s: float) -> None:
    if "cpu" not in args.skip:
        print(f"1. CPU/GiB: {size >> 20} MiB x {per_rep} per repeat, {reps} repeats", flush=True)
        res["cpu"] = measure_cpu(live, size, per_rep, reps)
    if "rps" not in args.skip:
        if shutil.which("wrk"):
            print(f"2. req/s: wrk -t1 -c{args.conns} -d{duration:g}s, {rps_reps} repeats",
                  flush=True)
            res["rps"] = measure_rps(live, args.conns, duration, rps_reps)
        else:
            print("SKIP req/s: wrk not installed (run benchmarks/setup_peers.sh)", flush=True)
            res["rps"] = {"skipped": "wrk not installed"}
    if args.profile:
        z = next((s for s in live if s.name == ZCOPY), None)
        if z and shutil.which("wrk"):
            print("profile: py-spy on zcopy serve during wrk", flush=True)
            res["profile"] = profile_rps(z, args.out, args.conns, duration)
            for f, share in res["profile"].get("top_self", [])[:10]:
                print(f"  {share:6.1%}  {f}", flush=True)
    if "rss" not in args.skip:
        print(f"3. RSS: {clients} clients for {rss_s:g}s", flush=True)
        res["rss"] = measure_rss([s for s in live if s.name != HTTPSERVER] or live,
                                 clients, rss_s)
    if "strace" not in args.skip:
        res["strace"] = {}
        why = strace.unavailable_reason()
        if why is not None:
            print(f"SKIP strace: {why}", flush=True)
            res["strace"][ZCOPY] = {"skipped": why}
            return
        print("4. strace: whole file, a range, small files", flush=True)
        for s in live:
            res["strace"][s.name] = measure_strace(s, tmp, root, size)
            r = res["strace"][s.name]
            if "skipped" in r:
                print(f"  {s.name}: skipped: {r['skipped']}", flush=True)
                continue
            print(f"  {s.name}: {r['sendfile_bytes']}/{r['body_bytes_expected']} body bytes by "
                  f"sendfile in {r['sendfile_calls']} calls; {r['file_reads']} reads of the "
                  f"file", flush=True)


if __name__ == "__main__":
    sys.exit(main())
