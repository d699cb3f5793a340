"""The same Starlette app under `zcopy serve --app`, uvicorn, hypercorn and granian.

One server runs at a time, pinned to CPU 0; the load (this process, and wrk)
runs on CPU 1. Each repeat starts every server in turn (rotated order), takes
one sample of each measurement, and stops it; figures are medians over the
repeats with their spread, ratios are paired within a repeat. The app is
benchmarks/asgi_bench_apps.py. Measurements:

1. ``file``: server CPU seconds per GiB downloading a 512 MiB file through
   Starlette's ``FileResponse`` (``zcopy serve DIR``, static, is the baseline:
   goal ≤ 1.2x it, ≤ 0.1x uvicorn).
2. ``range``: the same with 1 MiB ``Range`` requests (keep-alive) through
   ``zcopy.asgi.FileResponse`` (zerocopysend where the server offers it); the
   static server answers the same requests as the baseline.
3. ``rps``: requests/s, keep-alive, ``wrk -t1 -c64``: a 4 KiB ``FileResponse`` and
   a hello-world ``PlainTextResponse`` (goal ≥ 1.0x uvicorn on the same loop).
4. ``rss``: server RSS while 200 clients download the big file at once.
5. ``trace``: `zcopy trace --pid` on each server while it sends the big file:
   the verdict (fast-path / user-space) seen from outside.
6. ``layers``: where a ranged answer's per-request CPU goes under
   ``zcopy serve --app``: 100-byte ranges (the bytes cost nothing) answered by
   the static server, then by the ``layers`` app with less and less machinery
   removed (memory body; one zerocopysend of a file kept open;
   ``zcopy.asgi.FileResponse``; the same under Starlette), alternated.

Servers that are not installed are skipped with a message
(``pip install -e '.[asgi-peers]'``). Full runs only under the benchmark lock:

    flock /tmp/zcopy-bench.lock .venv/bin/python benchmarks/asgi_bench.py --out asgi-bench

``OUT/asgi_bench.json`` and ``OUT/asgi_bench.md`` are written; docs/asgi.md quotes them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import bench_lock, http_get, read_head, rotated, tail, version
from serve_bench import (
    BIG,
    CLIENT_CPU,
    GIB,
    MIB,
    SERVER_CPU,
    SMALL,
    Server,
    cpu_busy,
    machine,
    make_files,
    measure_cpu,
    measure_rss,
    median,
    stop,
    tree_cpu,
)

from zcopy.tools._proc import free_port, spread

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
SCHEMA = "zcopy-asgi-bench/1"
APP = "asgi_bench_apps:app"
STATIC = "zcopy serve (static)"
ZCOPY = "zcopy serve --app"
ZCOPY_UV = "zcopy serve --app (uvloop)"
UVICORN = "uvicorn"
UVICORN_UV = "uvicorn (uvloop)"
HYPERCORN = "hypercorn"
GRANIAN = "granian"
MEASURES = ("file", "range", "rps_file", "rps_hello", "rss", "trace", "layers")
LAYERS_APP = "asgi_bench_apps:layers"
# What a ranged answer costs per request, layer by layer: (label, the static server?, path).
# 100-byte ranges, so that the bytes cost nothing and what is left is per-request work.
LAYERS = (
    ("zcopy serve DIR (static)", True, f"/{BIG}"),
    ("--app: the bytes from memory, no file", False, f"/mem/{BIG}"),
    ("--app: one zerocopysend, file kept open", False, f"/zc/{BIG}"),
    ("--app: zcopy.asgi.FileResponse, no framework", False, f"/zf/{BIG}"),
    ("--app: FileResponse under Starlette (the range app)", False, f"/z/{BIG}"),
)
LAYER_RANGE = 100
BASELINE = " [baseline]"  # suffix of the servers run from --baseline TREE
SOURCES: dict[str, Path] = {}  # server name -> the src/ it runs from, when not this checkout's


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def baseline_copies(found: list[Server | str], tree: Path | None) -> list[Server | str]:
    """With ``--baseline TREE``: each zcopy server again, run from ``TREE/src``, right after it.

    An A/B in one run: before and after a change share the repeats, the machine's
    load and the files, and their ratio is paired within each repeat.
    """
    if tree is None:
        return found
    out: list[Server | str] = []
    for s in found:
        out.append(s)
        if isinstance(s, Server) and s.name.startswith("zcopy"):
            p = free_port()
            argv = [str(p) if a == str(s.port) else a for a in s.argv]
            twin = Server(s.name + BASELINE, argv, p, note=f"{s.note}; from {tree}/src")
            SOURCES[twin.name] = tree / "src"
            out.append(twin)
    return out


def servers(root: Path) -> Iterator[Server | str]:
    """Each server's command line (the same app, one worker, no access log), or why not."""
    py = sys.executable
    p = free_port()
    yield Server(STATIC, [py, "-m", "zcopy.serve", str(root), "--no-access-log",
                          "--port", str(p)], p,
                 note="the static server on the same files: the baseline")
    zc = [py, "-m", "zcopy.serve", "--app", APP, "--app-dir", str(HERE), "--no-access-log"]
    p = free_port()
    yield Server(ZCOPY, [*zc, "--port", str(p)], p, note="asyncio loop")
    uv = _has("uvloop")
    if uv:
        p = free_port()
        yield Server(ZCOPY_UV, [*zc, "--loop", "uvloop", "--port", str(p)], p,
                     note=f"uvloop {version('uvloop')}")
    if _has("uvicorn"):
        uvi = [py, "-m", "uvicorn", APP, "--app-dir", str(HERE), "--http", "httptools",
               "--no-access-log", "--log-level", "warning", "--lifespan", "off"]
        p = free_port()
        yield Server(UVICORN, [*uvi, "--loop", "asyncio", "--port", str(p)], p,
                     note=f"uvicorn {version('uvicorn')}, httptools, asyncio loop")
        if uv:
            p = free_port()
            yield Server(UVICORN_UV, [*uvi, "--loop", "uvloop", "--port", str(p)], p,
                         note=f"uvicorn {version('uvicorn')}, httptools, uvloop")
    else:
        yield f"{UVICORN}: not installed (pip install -e '.[asgi-peers]')"
    if _has("hypercorn"):
        p = free_port()
        yield Server(HYPERCORN, [py, "-m", "hypercorn", APP, "--bind", f"127.0.0.1:{p}",
                                 "--workers", "1"], p,
                     note=f"hypercorn {version('hypercorn')}, asyncio worker")
    else:
        yield f"{HYPERCORN}: not installed (pip install -e '.[asgi-peers]')"
    if _has("granian"):
        p = free_port()
        yield Server(GRANIAN, [py, "-m", "granian", "--interface", "asgi", "--host",
                               "127.0.0.1", "--port", str(p), "--workers", "1",
                               "--no-ws", "--http", "1", APP], p,
                     note=f"granian {version('granian')} (Rust HTTP, its own runtime threads)")
    else:
        yield f"{GRANIAN}: not installed (pip install -e '.[asgi-peers]')"


def start(server: Server, tmp: Path, root: Path, cpu: int | None) -> None:
    env = dict(os.environ, PYTHONPATH=f"{SOURCES.get(server.name, SRC)}:{HERE}",
               PYTHONUNBUFFERED="1",
               ZCOPY_BENCH_ROOT=str(root))
    server.log = tmp / f"{re.sub(r'[^A-Za-z0-9]+', '_', server.name)}.log"
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    with open(server.log, "ab") as log:
        server.proc = subprocess.Popen(server.argv, env=env, stdout=log, stderr=log,
                                       stdin=subprocess.DEVNULL, cwd=HERE,
                                       preexec_fn=pin, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        try:
            if http_get(server.port, f"/{SMALL}", bytearray(65536), timeout=2) == (200, 4096):
                return
        except OSError:
            pass
        time.sleep(0.1)
    stop(server)
    raise RuntimeError(f"{server.name} did not start; log:\n{tail(server.log)}")


# ----------------------------------------------------------------------------- measurements


# Requests per connection: below every server's per-connection cap (zcopy serve's
# --max-requests is 1,000), so a long run opens a new connection now and then instead of
# meeting a close it does not expect.
PER_CONN = 500


def batches(items: range) -> list[range]:
    """``items`` (one per request) as per-connection batches of at most ``PER_CONN``.

    >>> [len(b) for b in batches(range(1200))], batches(range(0)), batches(range(5, 7))
    ([500, 500, 200], [], [range(5, 7)])
    """
    return [items[i:i + PER_CONN] for i in range(0, len(items), PER_CONN)]


def range_cpu(s: Server, size: int, count: int) -> tuple[float, float]:
    """Server CPU s/GiB and GiB/s for ``count`` 1 MiB Range requests on one keep-alive connection.

    Through ``zcopy.asgi.FileResponse`` (``/z/``) for the app servers; the static
    server answers the same requests itself. Keep-alive, as a player seeking in
    a video does: the figure is the cost of ranged responses, not of connections.
    """
    path = f"/{BIG}" if s.name.startswith(STATIC) else f"/z/{BIG}"
    rng = random.Random(7)
    blocks = size // MIB
    buf = bytearray(MIB)
    t0, (t_0, r0) = time.monotonic(), tree_cpu(s.pid)
    for batch in batches(range(count)):
        with socket.create_connection(("127.0.0.1", s.port), timeout=60) as conn:
            for _ in batch:
                k = rng.randrange(blocks)
                conn.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n"
                             f"Range: bytes={k * MIB}-{(k + 1) * MIB - 1}\r\n\r\n".encode())
                head, rest = read_head(conn, s.name)
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if not head.startswith(b"HTTP/1.1 206") or not m or int(m[1]) != MIB:
                    raise RuntimeError(f"{s.name}: Range request gave {head[:200]!r}")
                left = MIB - len(rest)
                while left > 0:
                    n = conn.recv_into(buf, min(left, MIB))
                    if not n:
                        raise ConnectionError(f"{s.name}: closed mid-body")
                    left -= n
    t_1, r1 = tree_cpu(s.pid)
    gib = count * MIB / GIB
    used = (r1 - r0) if r1 and r0 else (t_1 - t_0)  # schedstat run time, else ticks
    return used / gib, gib / (time.monotonic() - t0)


def per_request_cpu(
    s: Server, path: str, count: int, first: int, length: int = LAYER_RANGE
) -> float:
    """Server CPU µs per request for ``count`` Range requests of ``length`` bytes, kept alive."""
    buf = bytearray(min(length, MIB))
    (t_0, r0) = tree_cpu(s.pid)
    for batch in batches(range(first, first + count)):
        with socket.create_connection(("127.0.0.1", s.port), timeout=60) as conn:
            for k in batch:
                conn.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n"
                             f"Range: bytes={k}-{k + length - 1}\r\n\r\n".encode())
                head, rest = read_head(conn, s.name)
                if not head.startswith(b"HTTP/1.1 206"):
                    raise RuntimeError(f"{s.name} {path}: {head[:200]!r}")
                left = length - len(rest)
                while left > 0:
                    got = conn.recv_into(buf, min(left, len(buf)))
                    if not got:
                        raise ConnectionError(f"{s.name}: closed mid-body")
                    left -= got
    t_1, r1 = tree_cpu(s.pid)
    return ((r1 - r0) if r1 and r0 else (t_1 - t_0)) / count * 1e6


def measure_layers(root: Path, tmp: Path, reps: int, count: int,
                   baseline: Path | None = None, length: int = LAYER_RANGE) -> dict[str, Any]:
    """``LAYERS``: the static server and ``zcopy serve --app`` on the layers app, alternated.

    ``length``: the bytes of each ranged answer (the default, 100, makes the bytes cost
    nothing: the figure is the per-request work; 1 MiB shows it beside a real send).

    With ``baseline``, every layer again on servers run from ``baseline/src``.
    """
    py = sys.executable
    pairs: list[tuple[str, Server, Server]] = []
    for suffix in ("", BASELINE) if baseline is not None else ("",):
        p, q = free_port(), free_port()
        static = Server(STATIC + suffix, [py, "-m", "zcopy.serve", str(root), "--no-access-log",
                                          "--port", str(p)], p)
        app = Server("zcopy serve --app (layers)" + suffix,
                     [py, "-m", "zcopy.serve", "--app", LAYERS_APP, "--app-dir", str(HERE),
                      "--no-access-log", "--port", str(q)], q)
        if suffix and baseline is not None:
            SOURCES[static.name] = SOURCES[app.name] = baseline / "src"
        pairs.append((suffix, static, app))
    cases = [(label + suffix, static if is_static else app, path)
             for suffix, static, app in pairs for label, is_static, path in LAYERS]
    got: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    try:
        for _, static, app in pairs:
            for s in (static, app):
                start(s, tmp, root, SERVER_CPU if CLIENT_CPU >= 0 else None)
        for i in range(reps):
            for label, s, path in rotated(cases, i):
                per_request_cpu(s, path, 20, 0, length)  # warm: imports, caches, a connection
                got[label].append(per_request_cpu(s, path, count, 1000 * i, length))
            print(f"  layers repeat {i + 1}/{reps}: "
                  + ", ".join(f"{v[-1]:.0f}" for v in got.values()) + " us/request", flush=True)
    finally:
        for _, static, app in pairs:
            stop(static)
            stop(app)
    return {label: {"us_per_request": round(median(v), 1), "spread": spread(v), "runs": v}
            for label, v in got.items()}


def wrk(s: Server, path: str, conns: int, seconds: float) -> dict[str, Any]:
    """wrk on ``path`` (keep-alive): req/s, errors, and the server's CPU use meanwhile."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", f"http://127.0.0.1:{s.port}{path}"]
    t0, (c0, _), b0 = time.monotonic(), tree_cpu(s.pid), cpu_busy(SERVER_CPU)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    c1, _ = tree_cpu(s.pid)
    wall = time.monotonic() - t0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(m[1]), "errors": errors + (int(non2[1]) if non2 else 0),
            "server_cpu_util": round((c1 - c0) / wall, 3),
            "cpu0_other_util": round(max(0.0, cpu_busy(SERVER_CPU) - b0 - (c1 - c0)) / wall, 3)}


def trace_verdict(s: Server, size: int) -> dict[str, Any]:
    """`zcopy trace --pid` while the server sends the big file through Starlette's FileResponse."""
    argv = [sys.executable, "-m", "zcopy", "trace", "--pid", str(s.pid), "--json",
            "--backend", "strace", "--seconds", "60"]
    env = dict(os.environ, PYTHONPATH=str(SRC))
    tracer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)
    time.sleep(1.5)  # attached
    try:
        http_get(s.port, f"/{BIG}", bytearray(MIB))
    finally:
        tracer.send_signal(2)  # SIGINT: stop tracing and report
        out, err = tracer.communicate(timeout=60)
    try:
        rep = json.loads(out)
    except json.JSONDecodeError:
        return {"error": (err or out).strip()[-300:]}
    return {"verdict": rep.get("verdict"), "telltale": rep.get("telltale"),
            "zero_copy_share": rep.get("zero_copy_share")}


# ----------------------------------------------------------------------------- the run


def run(args: argparse.Namespace, root: Path, tmp: Path, size: int) -> dict[str, Any]:
    found = baseline_copies(list(servers(root)), args.baseline)
    live = [s for s in found if isinstance(s, Server)
            and (not args.only or any(o in s.name for o in args.only))]
    skipped = [s for s in found if isinstance(s, str)]
    for why in skipped:
        print(f"SKIP {why}", flush=True)
    samples: dict[str, dict[str, list[Any]]] = {s.name: {} for s in live}
    todo = set(args.measure or MEASURES)
    todo -= {k for k, off in (("rss", args.no_rss), ("trace", args.no_trace)) if off}
    for i in range(args.reps):
        for s in rotated(live, i):
            start(s, tmp, root, SERVER_CPU if CLIENT_CPU >= 0 else None)
            try:
                got = samples[s.name]
                if "file" in todo:
                    cpu = measure_cpu([s], size, args.per_rep, 1)["rows"][0]
                    # schedstat run time (ns), not 10 ms ticks; ticks where schedstat is missing
                    got.setdefault("file", []).append(cpu["sched_runs"][0] or cpu["runs"][0])
                    got.setdefault("file_gibps", []).append(cpu["gib_per_s"])
                if "range" in todo:
                    r, speed = range_cpu(s, size, args.ranges)
                    got.setdefault("range", []).append(r)
                    got.setdefault("range_gibps", []).append(speed)
                if shutil.which("wrk"):
                    for key, path in (("rps_file", f"/{SMALL}"), ("rps_hello", "/hello")):
                        if key not in todo or (s.name.startswith(STATIC) and key == "rps_hello"):
                            continue
                        one = wrk(s, path, args.conns, args.duration)
                        got.setdefault(key, []).append(one)
                if i == 0 and "rss" in todo and not s.name.startswith(STATIC):
                    got["rss"] = [measure_rss([s], args.clients, args.rss_seconds)["rows"][0]]
                if i == 0 and "trace" in todo and not s.name.startswith(STATIC):
                    got["trace"] = [trace_verdict(s, size)]
            finally:
                stop(s)
            print(f"  repeat {i + 1}/{args.reps} {s.name}:"
                  + (f" file {got['file'][-1]:.3f} s/GiB" if "file" in got else "")
                  + (f", range {got['range'][-1]:.3f}" if "range" in got else "")
                  + "".join(f", {k} {got[k][-1]['rps']:.0f}/s" for k in ("rps_file", "rps_hello")
                            if k in got), flush=True)
    out = {"servers": [{"name": s.name, "note": s.note, "argv": _portable(s.argv)} for s in live],
           "skipped": skipped, "samples": samples}
    if "layers" in todo:
        out["layers"] = measure_layers(root, tmp, args.reps, args.layer_requests, args.baseline,
                                       args.layer_range)
        out["layer_range"] = args.layer_range
    return out


def _ratio(samples: dict[str, dict[str, list[Any]]], a: str, b: str, key: str,
           value: Any = lambda x: x, key_b: str = "") -> dict[str, Any] | None:
    """Per-repeat ratio of a's ``key`` to b's ``key_b`` (default the same), median and spread."""
    key_b = key_b or key
    if key not in samples.get(a, {}) or key_b not in samples.get(b, {}):
        return None
    pairs = [value(x) / value(y)
             for x, y in zip(samples[a][key], samples[b][key_b], strict=False) if value(y)]
    return {"median": round(median(pairs), 3), "spread": spread(pairs)} if pairs else None


def summarise(res: dict[str, Any]) -> None:
    samples = res["samples"]
    rows = []
    for name, got in samples.items():
        row: dict[str, Any] = {"name": name}
        for key in ("file", "range", "file_gibps", "range_gibps"):
            if key in got:
                row[key] = round(median(got[key]), 4)
                row[key + "_spread"] = spread(got[key])
        for key in ("rps_file", "rps_hello"):
            if key in got:
                row[key] = round(median([x["rps"] for x in got[key]]), 1)
                row[key + "_spread"] = spread([x["rps"] for x in got[key]])
                row[key + "_server_cpu"] = median([x["server_cpu_util"] for x in got[key]])
                row[key + "_errors"] = sum(x["errors"] for x in got[key])
        if "rss" in got:
            r = got["rss"][0]
            row["rss_peak_mib"] = r["peak_rss_mib"]
            row["rss_answered"] = r["responses_started"]
        if "trace" in got:
            row["trace"] = got["trace"][0]
        rows.append(row)
    res["rows"] = rows
    rps = lambda x: x["rps"]  # noqa: E731
    res["goals"] = {
        "file_vs_static": _ratio(samples, ZCOPY, STATIC, "file"),
        "file_vs_uvicorn": _ratio(samples, ZCOPY, UVICORN, "file"),
        "range_vs_static": _ratio(samples, ZCOPY, STATIC, "range"),
        "range_vs_uvicorn": _ratio(samples, ZCOPY, UVICORN, "range"),
        "rps_file_vs_uvicorn": _ratio(samples, ZCOPY, UVICORN, "rps_file", rps),
        "rps_hello_vs_uvicorn": _ratio(samples, ZCOPY, UVICORN, "rps_hello", rps),
        "rps_file_vs_uvicorn_uvloop": _ratio(samples, ZCOPY_UV, UVICORN_UV, "rps_file", rps),
        "rps_hello_vs_uvicorn_uvloop": _ratio(samples, ZCOPY_UV, UVICORN_UV, "rps_hello", rps),
        "rps_hello_vs_granian": _ratio(samples, ZCOPY_UV, GRANIAN, "rps_hello", rps),
    }
    if any(name.endswith(BASELINE) for name in samples):  # --baseline: the same, before
        b = BASELINE
        res["goals"].update({
            "range_vs_static" + b: _ratio(samples, ZCOPY + b, STATIC + b, "range"),
            "file_vs_static" + b: _ratio(samples, ZCOPY + b, STATIC + b, "file"),
            "range: after / before": _ratio(samples, ZCOPY, ZCOPY + b, "range"),
            "static range: after / before": _ratio(samples, STATIC, STATIC + b, "range"),
            "hello req/s: after / before": _ratio(samples, ZCOPY, ZCOPY + b, "rps_hello", rps),
        })


def table(res: dict[str, Any]) -> str:
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        if key not in row:
            return "-"
        sp = row.get(key + "_spread")
        rel = f" (±{sp['rel'] / 2:.0%})" if sp and len(res["samples"][row["name"]].get(
            key.removesuffix("_gibps"), [])) > 1 else ""
        return format(row[key], fmt) + rel

    lines = [
        "| server | file CPU s/GiB | range CPU s/GiB | 4 KiB req/s | hello req/s "
        "| RSS 200 dl (MiB) | zcopy trace |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in res["rows"]:
        trace = row.get("trace", {})
        lines.append(
            f"| {row['name']} | {cell(row, 'file', '.3f')} | {cell(row, 'range', '.3f')} | "
            f"{cell(row, 'rps_file', '.0f')} | {cell(row, 'rps_hello', '.0f')} | "
            f"{row.get('rss_peak_mib', '-')} | {trace.get('verdict') or trace.get('error', '-')} |"
        )
    if res.get("layers"):
        n = res.get("layer_range", LAYER_RANGE)
        lines += ["", f"Per request, {n}-byte ranges (server CPU us, median):", ""]
        for label, r in res["layers"].items():
            sp = r["spread"]
            lines.append(f"- {label}: {r['us_per_request']:.0f}"
                         + (f" ({sp['min']:.0f} to {sp['max']:.0f})" if sp else ""))
    lines.append("")
    for goal, r in res["goals"].items():
        if r:
            sp = r["spread"]
            lines.append(f"- {goal}: {r['median']:.3f}x"
                         + (f" (repeats {sp['min']:.3f} to {sp['max']:.3f})" if sp else ""))
    return "\n".join(lines)


def _portable(argv: list[str]) -> list[str]:
    """The argv as recorded in the JSON: paths inside the checkout made relative to it."""
    root = str(HERE.parent) + os.sep
    return [a[len(root):] if a.startswith(root) else a for a in argv]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("asgi-bench"))
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, short runs")
    ap.add_argument("--size", type=int, help="big file bytes (default 512 MiB; quick 16 MiB)")
    ap.add_argument("--reps", type=int, help="repeats (default 3; quick 1)")
    ap.add_argument("--per-rep", type=int, help="whole-file downloads per repeat (default 2)")
    ap.add_argument("--ranges", type=int, help="1 MiB Range requests per repeat (default 512)")
    ap.add_argument("--layer-requests", type=int,
                    help="small Range requests per layer and repeat (default 900; quick 50)")
    ap.add_argument("--layer-range", type=int, default=LAYER_RANGE,
                    help=f"bytes per ranged answer in --measure layers (default {LAYER_RANGE})")
    ap.add_argument("--duration", type=float, help="wrk seconds (default 5; quick 1)")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections")
    ap.add_argument("--clients", type=int, help="RSS clients (default 200; quick 20)")
    ap.add_argument("--rss-seconds", type=float, help="RSS test length (default 5; quick 1)")
    ap.add_argument("--only", action="append", help="only servers whose name contains this")
    ap.add_argument("--measure", action="append", choices=MEASURES,
                    help="only this measurement (repeatable; default all)")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--no-trace", action="store_true")
    ap.add_argument("--baseline", type=Path, metavar="TREE",
                    help="also run the zcopy servers from TREE/src (e.g. a `git archive` of "
                         "the commit before a change), interleaved: an A/B in one run")
    args = ap.parse_args()
    q = args.quick
    args.baseline = args.baseline.resolve() if args.baseline else None
    size = args.size or (16 * MIB if q else 512 * MIB)
    args.reps = args.reps or (1 if q else 3)
    args.per_rep = args.per_rep or (1 if q else 2)
    args.ranges = args.ranges or (16 if q else 512)
    args.layer_requests = args.layer_requests or (50 if q else 900)
    args.duration = args.duration or (1.0 if q else 5.0)
    args.clients = args.clients or (20 if q else 200)
    args.rss_seconds = args.rss_seconds or (1.0 if q else 5.0)
    lock = bench_lock(q)
    facts = machine()
    if CLIENT_CPU >= 0:
        os.sched_setaffinity(0, {CLIENT_CPU})
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "schema": SCHEMA, "argv": _portable(sys.argv), "quick": q, "machine": facts,
        "packages": {d: version(d) for d in ("starlette", "uvicorn", "uvloop", "hypercorn",
                                             "granian", "httptools")},
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    print(f"asgi_bench: {size >> 20} MiB file, {args.reps} repeats", flush=True)
    with tempfile.TemporaryDirectory(prefix="zcopy-asgi-bench-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "www"
        make_files(root, size)
        res.update(run(args, root, tmp, size))
    res["finished_utc"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    summarise(res)
    text = table(res)
    print("\n" + text)
    (args.out / "asgi_bench.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (args.out / "asgi_bench.md").write_text(text + "\n")
    if lock:
        lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
