"""results.json and the table: the run's figures, built from its passes (pure), written as it goes.

``results.json`` is rewritten after every pass (write to a temporary file,
then rename), so a run that stops half-way, or a server that crashes, leaves
the figures gathered so far on disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .measure import Figures, median, ratio, spread
from .modes import MODES
from .strace_pass import columns

SCHEMA = 2

# A ratio is printed only when both its figures are this many resolutions or more
# (then it is good to about 10%); below, the table says "n/r" (not resolved).
RATIO_RESOLUTIONS = 10
# Other tasks' CPU on the server's core above this share of a pass makes the run "busy".
BUSY_SHARE = 0.10
QUIET_RUN = ("for a quiet run, stop other work on this machine (builds, tests, other "
             "benchmarks), check that `top` shows CPU 0 idle, and use --repeat 3 to see the spread")

# What each mode is, in a user's words (for the closing sentence and the charts).
PLAIN = {
    "raw": "zcopy.copy on the open file",
    "wrapped": "the read()-only wrapper",
    "limit": "section()",
    "observed": "observe()",
    "stdlib": "socket.sendfile",
    "naive": "shutil.copyfileobj",
    "mmap": "copying from an mmap",
    "proxy-splice": "zcopy proxy",
    "proxy-copy": "zcopy proxy --no-splice",
}
# The route each mode should take, for runs without a strace pass to measure it.
EXPECTED_ROUTE = {
    "raw": "sendfile", "wrapped": "user space", "limit": "sendfile", "observed": "sendfile",
    "stdlib": "sendfile", "naive": "user space", "mmap": "mmap+write",
    "proxy-splice": "splice", "proxy-copy": "user space",
}
ZERO_COPY_ROUTES = ("sendfile", "splice")
# (figure, its resolution key) for the figures that may fall below the instrument's resolution.
RESOLVED = (("cpu_ms_per_gib", "cpu_ms_per_gib"),
            ("cpu_ms_per_gib_ex_softirq", "cpu_ms_per_gib_ex_softirq"))

# (results key, table header, format) in the Go post's order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("cpu_user_s", "user s", "{:.2f}"),
    ("cpu_sys_s", "sys s", "{:.2f}"),
    ("cpu_ms_per_gib", "CPU ms/GiB", "{:.0f}"),
    ("x_raw", "x raw", "{:.2f}"),
    ("cpu_ms_per_gib_ex_softirq", "ms/GiB excl. softirq", "{:.0f}"),
    ("x_raw_ex_softirq", "x raw excl.", "{:.2f}"),
    ("mib_per_cpu_s", "MiB/CPU-s", "{:.0f}"),
    ("wall_mib_s", "wall MiB/s", "{:.0f}"),
)
COUNTS = ("sendfile", "splice", "read", "write")


def _r(value: float | None) -> float | None:
    """Four decimals: the ticks behind these figures are 10 ms; more digits would be noise.

    >>> _r(0.039999999999999994), _r(None)
    (0.04, None)
    """
    return None if value is None else round(value, 4)


def mode_entry(
    runs: Sequence[Figures],
    verified: bool,
    syscalls: dict[str, int] | None,
    file_reads: int | None,
) -> dict[str, Any]:
    """One mode's results: medians over its repeats, their spread, and the strace counts.

    >>> from zcopy.tools.bench.measure import Cpu, figures, GIB
    >>> e = mode_entry([figures(Cpu(0.1, 0.2), GIB, 1.0)], True, None, None)
    >>> round(e["cpu_ms_per_gib"]), e["bytes_verified"], e["syscalls"]
    (300, True, None)
    """
    def med(key: str) -> float | None:
        return _r(median([getattr(r, key) for r in runs]))

    def worst(key: str) -> float | None:
        present = [v for v in (getattr(r, key) for r in runs) if v is not None]
        return _r(max(present)) if present else None

    return {
        "cpu_user_s": med("cpu_user_s"),
        "cpu_sys_s": med("cpu_sys_s"),
        "cpu_ms_per_gib": med("cpu_ms_per_gib"),
        "cpu_ms_per_gib_ex_softirq": med("cpu_ms_per_gib_ex_softirq"),
        "mib_per_cpu_s": med("mib_per_cpu_s"),
        "wall_mib_s": med("wall_mib_s"),
        "server_cpu_softirq_s": med("softirq_s"),
        "page_faults": med("page_faults"),
        # What each figure can be off by, per GiB (the coarsest of the repeats).
        "resolution_ms_per_gib": {
            "cpu_ms_per_gib": worst("resolution_ms_per_gib"),
            "cpu_ms_per_gib_ex_softirq": worst("ex_softirq_resolution_ms_per_gib"),
        },
        # Other tasks' CPU on the server's core, as a share of the pass (max over repeats).
        "others_share": worst("others_share"),
        "bytes_verified": verified,
        "syscalls": syscalls,
        "file_reads": file_reads,
        "bytes_per_repeat": runs[0].bytes if runs else 0,
        "repeats": len(runs),
        "spread": {
            key: spread([getattr(r, key) for r in runs])
            for key in ("cpu_ms_per_gib", "mib_per_cpu_s", "wall_mib_s")
        },
        "runs": [
            {"cpu_user_s": _r(r.cpu_user_s), "cpu_sys_s": _r(r.cpu_sys_s),
             "cpu_ms_per_gib": _r(r.cpu_ms_per_gib), "wall_mib_s": _r(r.wall_mib_s),
             "cpu_ms_per_gib_ex_softirq": _r(r.cpu_ms_per_gib_ex_softirq),
             "bytes": r.bytes, "server_cpu_softirq_s": _r(r.softirq_s),
             "page_faults": r.page_faults, "others_share": r.others_share}
            for r in runs
        ],
    }


def _resolution(entry: dict[str, Any], key: str) -> float:
    return float((entry.get("resolution_ms_per_gib") or {}).get(key) or 0.0)


def add_x_raw(modes: dict[str, dict[str, Any]]) -> None:
    """Put each mode's CPU per GiB relative to ``raw`` (the post's "3.4x") into its entry.

    ``unresolved`` lists the figures below the instrument's resolution, and
    the ratios whose figures are too close to it to be worth a decimal.

    >>> def res(ms): return {"resolution_ms_per_gib": {"cpu_ms_per_gib": ms}}
    >>> m = {"raw": {"cpu_ms_per_gib": 50, **res(1)}, "wrapped": {"cpu_ms_per_gib": 170, **res(1)}}
    >>> add_x_raw(m); m["wrapped"]["x_raw"], m["wrapped"]["unresolved"]
    (3.4, [])
    >>> m["raw"]["resolution_ms_per_gib"]["cpu_ms_per_gib"] = 320.0
    >>> add_x_raw(m); m["raw"]["unresolved"], m["wrapped"]["unresolved"]
    (['cpu_ms_per_gib', 'x_raw'], ['x_raw'])
    """
    base_entry = modes.get("raw", {})
    for entry in modes.values():
        entry["unresolved"] = [
            key for key, res in RESOLVED
            if entry.get(key) is not None and entry[key] < _resolution(entry, res)
        ]
    pairs = (("cpu_ms_per_gib", "x_raw"), ("cpu_ms_per_gib_ex_softirq", "x_raw_ex_softirq"))
    for key, out in pairs:
        base = base_entry.get(key)
        for entry in modes.values():
            entry[out] = _r(ratio(entry.get(key), base))
            measured = entry.get(key) is not None and base is not None
            if measured and not (_sharp(entry, key) and _sharp(base_entry, key)):
                entry["unresolved"].append(out)


def _sharp(entry: dict[str, Any], key: str) -> bool:
    """Whether a figure is far enough above its resolution for a ratio to mean something."""
    return float(entry.get(key) or 0.0) >= RATIO_RESOLUTIONS * _resolution(entry, key)


def route_of(mode: str, entry: dict[str, Any]) -> tuple[str, bool]:
    """The route a mode took, from its strace counts; else the expected one, and whether measured.

    >>> route_of("observed", {"syscalls": {"sendfile": 12, "write": 3}})
    ('sendfile', True)
    >>> route_of("proxy-copy", {"syscalls": {"recvfrom": 9, "sendto": 9}})
    ('user space', True)
    >>> route_of("wrapped", {"syscalls": None})
    ('user space', False)
    """
    counts = columns(entry.get("syscalls"))
    if counts["sendfile"] is None:
        return EXPECTED_ROUTE.get(mode, "?"), False
    for name in ZERO_COPY_ROUTES:
        if counts[name]:
            return name, True
    return ("mmap+write" if mode == "mmap" else "user space"), True


class Results:
    """The run's document, kept up to date on disk after each change."""

    def __init__(self, path: Path, parameters: dict[str, Any], machine: dict[str, Any]) -> None:
        self.path = path
        self.doc: dict[str, Any] = {
            "schema": SCHEMA,
            "tool": "zcopy bench",
            "complete": False,
            "parameters": parameters,
            "machine": machine,
            "notes": [],
            "modes": {},
            "skipped": {},
            "failed": {},
        }
        self._runs: dict[str, list[Figures]] = {}
        self._verified: dict[str, bool] = {}
        self._traces: dict[str, tuple[dict[str, int], int]] = {}
        self.write()  # on disk from the start: a run stopped before its first pass still says so

    def note(self, text: str) -> None:
        """Record a remark about the run (pinning off, strace skipped...)."""
        self.doc["notes"].append(text)
        self.write()

    def skip(self, mode: str, reason: str) -> None:
        """Record that ``mode`` did not run, and why."""
        self.doc["skipped"][mode] = reason
        self.write()

    def fail(self, mode: str, message: str) -> None:
        """Record that ``mode`` failed: its figures leave the table, the message stays."""
        self.doc["failed"][mode] = message
        self.doc["modes"].pop(mode, None)
        self._runs.pop(mode, None)
        self.write()

    def add_run(self, mode: str, run: Figures) -> None:
        """One finished, verified CPU pass of ``mode``."""
        if mode in self.doc["failed"]:
            return
        self._runs.setdefault(mode, []).append(run)
        self._verified[mode] = True
        self._refresh(mode)

    def add_trace(self, mode: str, syscalls: dict[str, int], file_reads: int) -> None:
        """The strace pass's counts for ``mode``."""
        self._traces[mode] = (syscalls, file_reads)
        if mode in self._runs:
            self._refresh(mode)

    def finish(self) -> None:
        """Mark the document complete (every planned pass ran or was accounted for)."""
        self.doc["complete"] = True
        self.write()

    def _refresh(self, mode: str) -> None:
        syscalls, file_reads = self._traces.get(mode, (None, None))
        entry = mode_entry(self._runs[mode], self._verified.get(mode, False), syscalls,
                           file_reads)
        entry["code"] = MODES[mode].code if mode in MODES else mode
        self.doc["modes"][mode] = entry
        self.doc["modes"] = {m: self.doc["modes"][m] for m in MODES if m in self.doc["modes"]}
        add_x_raw(self.doc["modes"])
        self.write()

    def write(self) -> None:
        """Atomically replace results.json with the current document."""
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=2) + "\n")
        os.replace(tmp, self.path)


def cell(entry: dict[str, Any], key: str, fmt: str) -> str:
    """One figure as the table shows it: "-" when missing, never a false 0 or a false ratio.

    >>> e = {"cpu_ms_per_gib": 3.0, "x_raw": 0.1, "unresolved": ["cpu_ms_per_gib", "x_raw"],
    ...      "resolution_ms_per_gib": {"cpu_ms_per_gib": 320.0}}
    >>> cell(e, "cpu_ms_per_gib", "{:.0f}"), cell(e, "x_raw", "{:.2f}"), cell(e, "nope", "")
    ('<320', 'n/r', '-')
    """
    value = entry.get(key)
    if key in entry.get("unresolved", ()):
        # A ratio over a base at the resolution (0 included) is "not resolved", not missing.
        return "n/r" if key.startswith("x_raw") else f"<{_resolution(entry, key):.0f}"
    return "-" if value is None else fmt.format(value)


def _syscalls(entry: dict[str, Any]) -> str:
    counts = columns(entry.get("syscalls"))
    present = [v for v in counts.values() if v is not None]
    return str(sum(present)) if present else "-"


COMPACT = ("mode", "route", "CPU ms/GiB", "x raw", "syscalls")


def table_rows(doc: dict[str, Any], wide: bool = False) -> list[list[str]]:
    """The table's cells (header first): the compact view, or every column with ``wide``.

    The compact view fits 80 columns: mode, route, CPU per GiB, x raw and the
    data syscalls of the strace pass (sendfile + splice + read + write).

    >>> doc = {"modes": {"raw": {"cpu_user_s": 0.01, "cpu_sys_s": 0.26, "cpu_ms_per_gib": 54.0,
    ...     "x_raw": 1.0, "mib_per_cpu_s": 18963.0, "wall_mib_s": 1600.0,
    ...     "syscalls": {"sendfile": 2958, "read": 7, "write": 7}}}}
    >>> table_rows(doc)[1]
    ['raw', 'sendfile', '54', '1.00', '2972']
    >>> rows = table_rows(doc, wide=True); rows[1][:5], rows[1][-5:]
    (['raw', 'sendfile', '0.01', '0.26', '54'], ['-', '2958', '0', '7', '7'])
    """
    if not wide:
        rows = [list(COMPACT)]
        for mode, entry in doc["modes"].items():
            route, measured = route_of(mode, entry)
            rows.append([mode, route if measured else f"{route}?",
                         cell(entry, "cpu_ms_per_gib", "{:.0f}"),
                         cell(entry, "x_raw", "{:.2f}"), _syscalls(entry)])
        return rows
    header = ["mode", "route", *(h for _, h, _ in COLUMNS), "busy %", *COUNTS]
    rows = [header]
    for mode, entry in doc["modes"].items():
        route, measured = route_of(mode, entry)
        cells = [mode, route if measured else f"{route}?"]
        cells += [cell(entry, key, fmt) for key, _, fmt in COLUMNS]
        share = entry.get("others_share")
        cells.append("-" if share is None else f"{share * 100:.0f}")
        counts = columns(entry.get("syscalls"))
        cells += ["-" if counts[c] is None else str(counts[c]) for c in COUNTS]
        rows.append(cells)
    return rows


def markdown_table(doc: dict[str, Any], wide: bool = True) -> str:
    """The table as Markdown, numbers right-aligned (for docs and table.md).

    >>> print(markdown_table({"modes": {}}).splitlines()[1])
    |---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
    """
    rows = table_rows(doc, wide)
    lines = ["| " + " | ".join(rows[0]) + " |", "|---|---" + "|--:" * (len(rows[0]) - 2) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def plain_table(rows: list[list[str]]) -> str:
    """The table as plain aligned text, for a pipe, a file or NO_COLOR (no box drawing).

    >>> print(plain_table([["mode", "x raw"], ["raw", "1.00"], ["wrapped", "3.40"]]))
    mode     x raw
    raw       1.00
    wrapped   3.40
    """
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.ljust(w) if j < 2 and not c[:1].isdigit() else c.rjust(w)
                 for j, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def footnotes(rows: list[list[str]]) -> list[str]:
    """The lines that explain the table's marks, only for the marks the table shows.

    >>> footnotes([["mode", "route", "x raw"], ["raw", "sendfile?", "n/r"]])[0]
    'route?: expected, not measured (no strace pass)'
    >>> footnotes([["mode", "route", "x raw"], ["raw", "sendfile", "1.00"]])
    []
    """
    cells = [c for r in rows[1:] for c in r]
    notes = []
    if any(c.endswith("?") for c in cells):
        notes.append("route?: expected, not measured (no strace pass)")
    if "n/r" in cells:
        notes.append(f"n/r: not resolved - a figure is under {RATIO_RESOLUTIONS}x the "
                     "instrument's resolution; a larger --size or more --transfers resolves it")
    if any(c.startswith("<") for c in cells):
        notes.append("<N: below the instrument's resolution of N ms/GiB (10 ms clock ticks "
                     "spread over the bytes moved), so no figure is claimed")
    return notes


def load(doc: dict[str, Any]) -> tuple[float | None, str | None]:
    """The busiest share of the server's core other tasks took in a pass, and the warning.

    >>> load({"modes": {"raw": {"others_share": 0.02}, "naive": {"others_share": 0.31}}})[0]
    0.31
    >>> load({"modes": {"raw": {"others_share": 0.02}}})
    (0.02, None)
    """
    shares = {m: e.get("others_share") for m, e in doc["modes"].items()}
    known = {m: s for m, s in shares.items() if s is not None}
    if not known:
        return None, None
    mode = max(known, key=lambda m: known[m])
    top = float(known[mode])
    if top <= BUSY_SHARE:
        return top, None
    return top, (f"the machine was busy: other tasks took {top:.0%} of the server's core "
                 f"during {mode}'s pass (over {BUSY_SHARE:.0%} makes CPU figures unreliable, those "
                 "excl. softirq most: other loopback traffic is subtracted too); "
                 + QUIET_RUN)


def summary(doc: dict[str, Any]) -> str:
    """One plain sentence saying what the run showed, from its own figures.

    >>> res = {"resolution_ms_per_gib": {"cpu_ms_per_gib": 1.0}}
    >>> doc = {"modes": {
    ...     "raw": {"cpu_ms_per_gib": 50.0, "syscalls": {"sendfile": 9}, **res},
    ...     "wrapped": {"cpu_ms_per_gib": 205.0, "syscalls": {"read": 9, "write": 9}, **res},
    ...     "observed": {"cpu_ms_per_gib": 52.0, "syscalls": {"sendfile": 9}, **res}}}
    >>> add_x_raw(doc["modes"]); summary(doc).split("; ")  # doctest: +NORMALIZE_WHITESPACE
    ['This run: the read()-only wrapper cost 4.1x the CPU per GiB of zcopy.copy on the open file',
     'observe() kept sendfile.']
    """
    modes = doc["modes"]
    if "raw" not in modes:
        return "This run had no raw pass, so nothing is compared with zcopy.copy."
    costs: list[tuple[str, float]] = []
    blurred: list[str] = []
    kept: dict[str, list[str]] = {}
    for mode, entry in modes.items():
        if mode == "raw" or mode not in MODES or MODES[mode].is_proxy:
            continue
        route, _ = route_of(mode, entry)
        name = PLAIN.get(mode, mode)
        if route in ZERO_COPY_ROUTES:
            kept.setdefault(route, []).append(name)
        elif "x_raw" in entry.get("unresolved", ()) or entry.get("x_raw") is None:
            blurred.append(name)
        else:
            costs.append((name, float(entry["x_raw"])))
    parts = []
    if costs:
        (name, x), *rest = costs
        parts.append(f"{name} cost {x:.1f}x the CPU per GiB of {PLAIN['raw']}"
                     + "".join(f", {n} {r:.1f}x" for n, r in rest))
    if blurred:
        parts.append(f"{_join(blurred)} could not be told apart from zcopy.copy at this size")
    parts += [f"{_join(names)} kept {route}" for route, names in kept.items()]
    spliced, copied = modes.get("proxy-splice"), modes.get("proxy-copy")
    key = "cpu_ms_per_gib"
    if spliced and copied and _sharp(spliced, key) and _sharp(copied, key):
        r = ratio(copied.get(key), spliced.get(key))
        if r is not None:
            parts.append(f"{PLAIN['proxy-copy']} cost {r:.1f}x the CPU per GiB of "
                         f"{PLAIN['proxy-splice']} with splice")
    if not parts:
        return "This run measured zcopy.copy only."
    return "This run: " + "; ".join(parts) + "."


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
