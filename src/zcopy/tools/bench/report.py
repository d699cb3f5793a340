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

SCHEMA = 1

# (results key, table header, format) in the seed's order.
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

    return {
        "cpu_user_s": med("cpu_user_s"),
        "cpu_sys_s": med("cpu_sys_s"),
        "cpu_ms_per_gib": med("cpu_ms_per_gib"),
        "cpu_ms_per_gib_ex_softirq": med("cpu_ms_per_gib_ex_softirq"),
        "mib_per_cpu_s": med("mib_per_cpu_s"),
        "wall_mib_s": med("wall_mib_s"),
        "server_cpu_softirq_s": med("softirq_s"),
        "page_faults": med("page_faults"),
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
             "page_faults": r.page_faults}
            for r in runs
        ],
    }


def add_x_raw(modes: dict[str, dict[str, Any]]) -> None:
    """Put each mode's CPU per GiB relative to ``raw`` (the seed's "3.4x") into its entry.

    >>> m = {"raw": {"cpu_ms_per_gib": 50.0}, "wrapped": {"cpu_ms_per_gib": 170.0}}
    >>> add_x_raw(m); m["wrapped"]["x_raw"]
    3.4
    """
    pairs = (("cpu_ms_per_gib", "x_raw"), ("cpu_ms_per_gib_ex_softirq", "x_raw_ex_softirq"))
    for key, out in pairs:
        base = modes.get("raw", {}).get(key)
        for entry in modes.values():
            entry[out] = _r(ratio(entry.get(key), base))


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


def table_rows(doc: dict[str, Any]) -> list[list[str]]:
    """The table's cells (header first) from a results document.

    >>> doc = {"modes": {"raw": {"cpu_user_s": 0.01, "cpu_sys_s": 0.26, "cpu_ms_per_gib": 54.0,
    ...     "x_raw": 1.0, "mib_per_cpu_s": 18963.0, "wall_mib_s": 1600.0,
    ...     "syscalls": {"sendfile": 2958, "read": 7, "write": 7}}}}
    >>> rows = table_rows(doc); rows[1][:4], rows[1][-4:]
    (['raw', '0.01', '0.26', '54'], ['2958', '0', '7', '7'])
    """
    header = ["mode", *(h for _, h, _ in COLUMNS), *COUNTS]
    rows = [header]
    for mode, entry in doc["modes"].items():
        cells = [mode]
        for key, _, fmt in COLUMNS:
            value = entry.get(key)
            cells.append("-" if value is None else fmt.format(value))
        counts = columns(entry.get("syscalls"))
        cells += ["-" if counts[c] is None else str(counts[c]) for c in COUNTS]
        rows.append(cells)
    return rows


def markdown_table(doc: dict[str, Any]) -> str:
    """The table as Markdown, numbers right-aligned (for docs and the terminal without rich).

    >>> print(markdown_table({"modes": {}}).splitlines()[1])
    |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
    """
    rows = table_rows(doc)
    lines = ["| " + " | ".join(rows[0]) + " |", "|---" + "|--:" * (len(rows[0]) - 1) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)
