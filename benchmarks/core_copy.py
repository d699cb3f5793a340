"""Core benchmark: file -> TCP socket, server CPU per GiB, for zcopy.copy and what Python offers.

Variants (each a server process pinned to CPU 0, a verifying client on CPU 1,
the same machinery as ``zcopy bench``: src/zcopy/tools/bench/):

* ``zcopy.copy(conn, f)`` (sendfile), ``conn.sendfile(f)``, ``shutil.copyfileobj`` to
  ``conn.makefile("wb")``;
* zcopy's user-space fallback (an object with only ``readinto()``, so zcopy's one
  reused buffer receives each read(2)) at buffer sizes 64 KiB .. 4 MiB: the
  measurement behind ``BUFSIZE`` in src/zcopy/_routes/userspace.py;
* ``JustReader`` (only ``read()``: a new bytes object per chunk) at the default size.

``--per-call`` measures instead what a small copy costs per call beside the bare
syscalls (4 KiB, 64 KiB; file -> socket, bytes -> BytesIO, socket -> socket):
benchmarks/core_percall.py.

Run only under the benchmark lock (one benchmark at a time on a small machine):

    flock /tmp/zcopy-bench.lock .venv/bin/python benchmarks/core_copy.py --out core_copy.json
    flock /tmp/zcopy-bench.lock .venv/bin/python benchmarks/core_copy.py --per-call

Results and how to read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from zcopy._routes import userspace  # noqa: E402
from zcopy.tools._proc import median, spread  # noqa: E402
from zcopy.tools.bench import data, machine  # noqa: E402
from zcopy.tools.bench.measure import MIB, Figures  # noqa: E402
from zcopy.tools.bench.options import parse_size  # noqa: E402
from zcopy.tools.bench.passes import PassSpec, run_pass  # noqa: E402

KIB = 1 << 10
# 32 KiB is Go io.Copy's buffer, the seed's wrapped case; the rest are the candidates for BUFSIZE.
BUFSIZES = (32 * KIB, 64 * KIB, 128 * KIB, 256 * KIB, 1 * MIB, 4 * MIB)

# (label, bench mode, user-space buffer size or None for the default)
VARIANTS: list[tuple[str, str, int | None]] = [
    ("zcopy.copy (sendfile)", "raw", None),
    ("socket.sendfile", "stdlib", None),
    ("shutil.copyfileobj", "naive", None),
    *((f"zcopy user space, {b // KIB} KiB buffer", "readinto", b) for b in BUFSIZES),
    (f"zcopy user space via read(), {userspace.BUFSIZE // KIB} KiB", "wrapped", None),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=512 * MIB, help="file size (512M)")
    p.add_argument("--transfers", type=int, default=6, help="transfers per variant and repeat")
    p.add_argument("--repeat", type=int, default=3, help="repeats; the median is reported")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--per-call", action="store_true",
                   help="per-call overhead of small copies beside the raw syscalls instead")
    args = p.parse_args()
    if args.per_call:
        return per_call(args.out)

    facts = machine.facts()
    pin = int(str(facts["cpus"])) >= 2
    work = Path(tempfile.mkdtemp(prefix="zcopy-core-bench-"))
    runs: dict[str, list[Figures]] = {label: [] for label, _, _ in VARIANTS}
    try:
        path, crc = data.generate(work, args.size)
        data.warm(path)
        run_id = uuid.uuid4().hex
        for r in range(args.repeat):
            for i, (label, mode, bufsize) in enumerate(VARIANTS):
                spec = PassSpec(mode, str(path), args.size, crc, args.transfers, pin, bufsize)
                got = run_pass(spec, work / f"{r}-{i}", run_id)
                figs = got.figures
                if got.error or figs is None:
                    print(f"{label}: {got.error}", file=sys.stderr)
                    return 1
                runs[label].append(figs)
                print(f"[{r + 1}/{args.repeat}] {label}: {figs.cpu_ms_per_gib:.0f} ms/GiB",
                      file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for label, mode, bufsize in VARIANTS:
        figs = runs[label]
        rows.append({
            "variant": label, "mode": mode, "bufsize": bufsize,
            "cpu_user_s": median([f.cpu_user_s for f in figs]),
            "cpu_sys_s": median([f.cpu_sys_s for f in figs]),
            "cpu_ms_per_gib": median([f.cpu_ms_per_gib for f in figs]),
            "cpu_ms_per_gib_spread": spread([f.cpu_ms_per_gib for f in figs]),
            "cpu_ms_per_gib_ex_softirq": median([f.cpu_ms_per_gib_ex_softirq for f in figs]),
            "cpu_ms_per_gib_ex_softirq_spread": spread(
                [f.cpu_ms_per_gib_ex_softirq for f in figs]
            ),
            "wall_mib_s": median([f.wall_mib_s for f in figs]),
            "server_cpu_softirq_s": median([f.softirq_s for f in figs]),
        })
    user = [r for r in rows if r["mode"] == "readinto"]
    # The sender's own CPU decides: the loopback softirq charged to it is the
    # receiver's TCP work and swings between runs on its own.
    key = "cpu_ms_per_gib_ex_softirq" if pin else "cpu_ms_per_gib"
    best = min(user, key=lambda r: r[key] or float("inf"))
    doc = {
        "benchmark": "benchmarks/core_copy.py",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "parameters": {"size": args.size, "transfers": args.transfers, "repeat": args.repeat,
                       "pinned": pin},
        "machine": facts,
        "rows": rows,
        "best_userspace_bufsize": best["bufsize"],
    }
    print("| variant | user s | sys s | CPU ms/GiB (median) | spread "
          "| excl. softirq (median) | spread | wall MiB/s |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        own = r["cpu_ms_per_gib_ex_softirq"]
        print(f"| {r['variant']} | {r['cpu_user_s']:.2f} | {r['cpu_sys_s']:.2f} | "
              f"{r['cpu_ms_per_gib']:.0f} | {_span(r['cpu_ms_per_gib_spread'])} | "
              f"{'-' if own is None else f'{own:.0f}'} | "
              f"{_span(r['cpu_ms_per_gib_ex_softirq_spread'])} | {r['wall_mib_s']:.0f} |")
    print(f"\nlowest CPU per GiB in user space: {best['bufsize'] // KIB} KiB buffer")
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def per_call(out: Path | None) -> int:
    """The per-call rows (benchmarks/core_percall.py): printed, and as JSON to ``out``."""
    import core_percall

    rows = core_percall.measure()
    print(core_percall.table(rows))
    if out:
        doc = {"benchmark": "benchmarks/core_copy.py --per-call", "machine": machine.facts(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
        out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def _span(s: dict[str, float] | None) -> str:
    return f"{s['min']:.0f}-{s['max']:.0f}" if s else "-"


if __name__ == "__main__":
    sys.exit(main())
