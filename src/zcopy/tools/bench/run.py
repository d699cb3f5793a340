"""The whole run: check the machine, prepare the file, run every pass, report.

Order: every mode once per repeat (repeats interleaved, so drift on the
machine spreads over all modes), then one strace pass per mode, then the
flamegraph pass, then the table and charts. ``results.json`` is on disk from
the start and grows after every pass.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from . import charts, data, machine, strace_pass
from .measure import MIB
from .modes import MODES
from .options import Settings
from .passes import PassResult, PassSpec, py_spy, run_pass
from .report import (
    BUSY_SHARE,
    Results,
    footnotes,
    load,
    markdown_table,
    plain_table,
    summary,
    table_rows,
)


def proxy_missing() -> str | None:
    """Why the proxy modes cannot run, or ``None`` when ``zcopy proxy`` is installed."""
    try:
        found = importlib.util.find_spec("zcopy.proxy") is not None
    except ModuleNotFoundError:
        found = False
    return None if found else "zcopy proxy is not installed here (no module zcopy.proxy)"


def default_out() -> Path:
    """A new folder in the current directory, named after the time (gitignored)."""
    return Path(f"zcopy-bench-{time.strftime('%Y%m%d-%H%M%S')}")


def execute(settings: Settings) -> int:
    """Run the bench with ``settings``; the exit status of ``zcopy bench``."""
    # Both are needed (the charts, the console): a missing one stops the bench before it
    # starts, and ``zcopy`` turns the ModuleNotFoundError into one line naming the extra.
    import matplotlib  # noqa: F401
    from rich.console import Console

    # rich honours NO_COLOR and prints no colour codes to a pipe or a file.
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if not sys.platform.startswith("linux"):
        console.print(f"zcopy bench: needs Linux (sendfile, splice, /proc); this is {sys.platform}")
        return 2
    out = Path(settings.out) if settings.out else default_out()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        console.print(f"zcopy bench: cannot create --out {out}: {exc.strerror}")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="zcopy-bench-work-"))
    # SIGTERM unwinds like Ctrl-C, so every child is ended and the temp file removed.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _execute(settings, out, workdir, console)
    except data.DataError as exc:
        console.print(f"[bold red]zcopy bench:[/] {exc}")
        return 2
    except (KeyboardInterrupt, SystemExit):
        console.print(f"zcopy bench: stopped; the results so far are in {out / 'results.json'}")
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _execute(settings: Settings, out: Path, workdir: Path, console: Any) -> int:
    facts = machine.facts()
    pin = int(str(facts["cpus"])) >= 2
    facts["pinned"] = pin
    facts["server_cpu"], facts["client_cpu"] = (0, 1) if pin else (None, None)
    if settings.file:
        path, size, crc = data.examine(settings.file)
    else:
        console.print(f"generating a {settings.size / MIB:.0f} MiB file of random bytes...")
        path, crc = data.generate(workdir, settings.size)
        size = settings.size
    data.warm(path)
    run_id = uuid.uuid4().hex
    params = {
        "size": size, "transfers": settings.transfers, "repeat": settings.repeat,
        "modes": list(settings.modes), "file": str(path) if settings.file else None,
        "strace": settings.strace, "strace_transfers": settings.strace_transfers,
        "quick": settings.quick, "flamegraph": settings.flamegraph, "run_id": run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results = Results(out / "results.json", params, facts)
    if not data.fits_in_memory(size):
        results.note("the file is larger than the memory available for the page cache: "
                     "reads may go to disk, unlike the Go post's warm-cache runs")
    if not pin:
        results.note("only one CPU is usable: server and client are not pinned and share it, "
                     "so the figures include their contention")
    modes = list(settings.modes)
    missing = proxy_missing()
    if missing:
        for m in [m for m in modes if MODES[m].is_proxy]:
            results.skip(m, missing)
            modes.remove(m)
    trace_why = strace_pass.unavailable_reason() if settings.strace else "--no-strace"
    if settings.strace and trace_why:
        results.note(f"no syscall counts: {trace_why}")
    profile = settings.flamegraph
    if profile and py_spy() is None:
        results.note("no flamegraph: py-spy is not installed (pip install 'zcopy[flamegraph]')")
        profile = None
    for text in results.doc["notes"]:
        console.print(f"note: {text}")
    for m, why in results.doc["skipped"].items():
        console.print(f"skipped {m}: {why}")

    def spec(mode: str, transfers: int) -> PassSpec:
        return PassSpec(mode, str(path), size, crc, transfers, pin)

    plan: list[tuple[str, str, int]] = [
        ("cpu", m, settings.transfers) for _ in range(settings.repeat) for m in modes
    ]
    if trace_why is None:
        plan += [("strace", m, settings.strace_transfers) for m in modes]
    if profile and profile in modes:
        plan.append(("flamegraph", profile, settings.transfers))

    _run_plan(plan, spec, results, workdir, run_id, out, console)
    results.finish()
    _report(results, out, console, settings.wide)
    return 1 if results.doc["failed"] else 0


def _run_plan(plan: list[tuple[str, str, int]], spec: Any, results: Results, workdir: Path,
              run_id: str, out: Path, console: Any) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = sum(n for _, _, n in plan)
    # A pipe, a file or NO_COLOR gets one plain line per pass instead of redrawn bars.
    plain = not console.is_terminal or console.no_color
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("transfers"), TimeElapsedColumn(), console=console,
                  disable=plain) as progress:
        overall = progress.add_task("all passes", total=total)
        for i, (kind, mode, transfers) in enumerate(plan):
            if mode in results.doc["failed"] or mode in results.doc["skipped"]:
                progress.advance(overall, transfers)
                continue
            task = progress.add_task(f"{mode} ({kind})", total=transfers)

            def advance(_n: int, task: Any = task) -> None:
                progress.advance(task)
                progress.advance(overall)

            got = run_pass(spec(mode, transfers), workdir / f"{i:03d}-{mode}-{kind}", run_id,
                           advance, trace=kind == "strace",
                           flamegraph=out / f"flamegraph-{mode}.svg"
                           if kind == "flamegraph" else None)
            progress.advance(overall, transfers - got.transfers_ok)
            if plain and got.error is None:
                console.print(f"{mode} ({kind}): {got.transfers_ok} of {transfers} transfers")
            _record(kind, mode, got, results, console)


def _record(kind: str, mode: str, got: PassResult, results: Results, console: Any) -> None:
    if got.error is not None:
        if kind == "cpu" and MODES[mode].is_proxy and got.transfers_ok == 0:
            results.skip(mode, f"zcopy proxy could not run: {got.error}")
            console.print(f"[yellow]skipped {mode}:[/] {got.error}")
        elif kind == "cpu":
            results.fail(mode, got.error)
            console.print(f"[bold red]failed {mode}:[/] {got.error}")
        else:
            results.note(f"{kind} pass of {mode} failed: {got.error}")
            console.print(f"[yellow]{kind} pass of {mode} failed:[/] {got.error}")
        return
    if kind == "cpu":
        figs = got.figures
        if figs is not None:
            results.add_run(mode, figs)
    elif kind == "strace" and got.syscalls is not None and got.file_reads is not None:
        results.add_trace(mode, got.syscalls, got.file_reads)


def _report(results: Results, out: Path, console: Any, wide: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    doc = results.doc
    rows = table_rows(doc, wide)
    title = (f"zcopy bench: {doc['parameters']['transfers']} x "
             f"{doc['parameters']['size'] / MIB:.0f} MiB per mode, server CPU")
    screen = Console(highlight=False)
    if screen.is_terminal and not screen.no_color:
        table = Table(title=title)
        for j, head in enumerate(rows[0]):
            table.add_column(head, justify="left" if j < 2 else "right", no_wrap=True)
        for row in rows[1:]:
            table.add_row(*row)
        screen.print(table)
    else:  # a pipe, a file or NO_COLOR: plain text, no box drawing, never wrapped
        print(title)
        print(plain_table(rows))
    for line in footnotes(rows):
        print(line)
    share, warning = load(doc)
    doc["load"] = {"others_share_max": share, "threshold": BUSY_SHARE, "busy": warning is not None}
    if warning:
        results.note(warning)
        console.print(f"[yellow]warning:[/] {warning}")
    sentence = summary(doc)
    doc["summary"] = sentence
    results.write()
    (out / "table.md").write_text(markdown_table(doc) + "\n")
    try:
        drawn = charts.draw(doc, out)
    except ImportError:
        results.note("no charts: matplotlib is not installed (pip install 'zcopy[bench]')")
        drawn = []
    for m, why in doc["failed"].items():
        console.print(f"[bold red]failed {m}:[/] {why}")
    for m, why in doc["skipped"].items():
        console.print(f"skipped {m}: {why}")
    if any(e["syscalls"] is None for e in doc["modes"].values()):
        console.print("syscall counts: '-' where no strace pass ran")
    console.print(f"results: {out / 'results.json'}" +
                  "".join(f", {p}" for p in drawn) +
                  "".join(f", {p}" for p in sorted(out.glob("flamegraph-*.svg"))))
    print(sentence)
