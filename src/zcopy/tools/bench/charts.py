"""The study's two bar charts, one bar per mode: CPU ms per GiB, and MiB per CPU-second.

matplotlib is imported here only, with the Agg backend (no display needed),
so the rest of the bench runs and imports without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .machine import title
from .report import cell, route_of

CHARTS = (
    ("cpu_ms_per_gib", "cpu_ms_per_gib.png", "server CPU ms per GiB (lower is better)"),
    ("mib_per_cpu_s", "mib_per_cpu_s.png",
     "MiB of payload per server CPU-second (higher is better)"),
)

# The colour says which route a bar took (measured by strace when it ran): greens for the
# kernel's zero-copy routes, red for copies through user space, so the two never look alike.
_COLOURS = {"sendfile": "#2b8a3e", "splice": "#74b816", "mmap+write": "#e67700",
            "user space": "#c92a2a", "?": "#868e96"}
_LEGEND = {
    "sendfile": "sendfile: the kernel sends the file, no byte passes through Python",
    "splice": "splice: the kernel moves socket to socket through a pipe, no byte through Python",
    "mmap+write": "write from an mmap: the file is mapped, one copy into the socket",
    "user space": "user space: each chunk read into Python, then written out (two copies)",
    "?": "route unknown",
}


def _route(doc: dict[str, Any], mode: str) -> str:
    route = route_of(mode, doc["modes"][mode])[0]
    return route if route in _COLOURS else "?"


def _errors(doc: dict[str, Any], modes: list[str], key: str) -> list[list[float]] | None:
    lo, hi = [], []
    for m in modes:
        entry = doc["modes"][m]
        s = entry.get("spread", {}).get(key)
        mid = entry.get(key)
        if not s or mid is None:
            lo.append(0.0)
            hi.append(0.0)
        else:
            lo.append(mid - s["min"])
            hi.append(s["max"] - mid)
    return [lo, hi] if any(lo) or any(hi) else None


def _own_part(doc: dict[str, Any], modes: list[str]) -> list[float] | None:
    """Each mode's CPU per GiB without the softirq charged to it, if every mode has it."""
    own = [doc["modes"][m].get("cpu_ms_per_gib_ex_softirq") for m in modes]
    if any(o is None for o in own):
        return None
    totals = [doc["modes"][m]["cpu_ms_per_gib"] for m in modes]
    return [min(float(o), t) for o, t in zip(own, totals, strict=True)]


def draw(doc: dict[str, Any], out: Path) -> list[Path]:
    """Write the charts of a results document into ``out``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    written = []
    heading = title(doc["machine"], doc["parameters"]["size"])
    for key, name, label in CHARTS:
        modes = [m for m, e in doc["modes"].items() if e.get(key) is not None]
        if not modes:
            continue
        values = [doc["modes"][m][key] for m in modes]
        fig, ax = plt.subplots(figsize=(10, 5.2), dpi=100)
        routes = [_route(doc, m) for m in modes]
        colours = [_COLOURS[r] for r in routes]
        handles = [Patch(color=_COLOURS[r], label=_LEGEND[r]) for r in dict.fromkeys(routes)]
        own = _own_part(doc, modes) if key == "cpu_ms_per_gib" else None
        if own is not None:
            # On loopback the receiver's TCP work runs as softirq on the sender's CPU
            # and is charged to it: show it apart, so the sender's own cost is visible.
            ax.bar(modes, own, color=colours)
            bars = ax.bar(modes, [v - o for v, o in zip(values, own, strict=True)], bottom=own,
                          color=colours, alpha=0.35, hatch="//", edgecolor="white",
                          yerr=_errors(doc, modes, key), capsize=4)
            handles.append(Patch(facecolor="#adb5bd", hatch="//", edgecolor="white",
                                 label="hatched: the receiver's loopback TCP work, "
                                       "charged to the server's CPU"))
        else:
            bars = ax.bar(modes, values, color=colours, yerr=_errors(doc, modes, key),
                          capsize=4)
        ax.bar_label(bars, labels=[cell(doc["modes"][m], key, "{:.0f}") for m in modes],
                     padding=2, fontsize=9)
        ax.set_ylabel(label)
        ax.legend(handles=handles, fontsize=7, loc="upper center", ncol=1)
        params = doc["parameters"]
        ax.set_title(f"{label}\n{heading}, {params['transfers']} transfers"
                     f" x {params['repeat']} repeat(s)", fontsize=10)
        ax.tick_params(axis="x", labelrotation=20)
        errors = _errors(doc, modes, key)
        top = max(v + (errors[1][j] if errors else 0.0) for j, v in enumerate(values))
        ax.set_ylim(0, top * (1.3 + 0.12 * len(handles)))  # room for the labels and legend
        fig.tight_layout()
        path = out / name
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
