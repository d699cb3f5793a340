"""A trace report in words: the telltale sentence, the per-syscall table, the flows, the JSON.

``flows.py`` decides (a :class:`~zcopy.tools.flows.Verdict` from byte
counts); everything said about that decision is here, so the wording can
change without touching the analysis.
"""

from __future__ import annotations

import json

from .flows import READS, WRITES, Flow, Report, Verdict, Via

# Flows smaller than this share of the biggest one are summed into one line: stray
# header or log bytes paired with an earlier read are noise next to the payload.
_SMALL = 0.001


def size(n: float) -> str:
    """Bytes in binary units, the way people say them.

    >>> size(2.5 * (1 << 30)), size(32768), size(200)
    ('2.5 GiB', '32.0 KiB', '200 B')
    """
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def percent(share: float) -> str:
    """A share as a percentage that never rounds a little into none or all.

    >>> percent(1.0), percent(0.99999), percent(0.5), percent(0.0)
    ('100%', '99.9%', '50.0%', '0%')
    """
    if share >= 1:
        return "100%"
    if share <= 0:
        return "0%"
    return f"{min(max(share, 0.001), 0.999):.1%}"


def calls_in_order(flow: Flow) -> list[tuple[str, int]]:
    """A flow's syscalls with their call counts, reads before writes.

    >>> from collections import Counter
    >>> calls_in_order(Flow("file", "socket", Via.COPY, 8, Counter(sendto=2, read=1)))
    [('read', 1), ('sendto', 2)]
    """
    names = sorted(flow.syscalls, key=lambda n: (n not in READS, n in WRITES, n))
    return [(n, flow.syscalls[n]) for n in names]


def telltale(report: Report) -> str:
    """The sentence that says why the verdict is what it is, naming the biggest flow.

    >>> from zcopy.tools.flows import Event, analyse
    >>> telltale(analyse([Event(1, "sendfile", "/f", "T", "file", "socket", 2 << 20, 32)]))
    '2.0 MiB went file -> socket through 32 sendfile calls of 64.0 KiB: \
the fast path is on (100% of payload bytes by zero-copy calls)'
    """
    share = report.zero_copy_share
    if report.verdict is Verdict.NO_DATA or share is None:
        return _no_data(report)
    pct = percent(share)
    zero_copy = [f for f in report.flows if f.via is Via.ZERO_COPY]
    copied = [f for f in report.flows if f.via is Via.COPY]
    if report.verdict is Verdict.FAST_PATH:
        return (
            f"{_through(zero_copy[0])}: the fast path is on ({pct} of payload bytes by "
            "zero-copy calls)"
        )
    if report.verdict is Verdict.USER_SPACE:
        return (
            f"{_through(copied[0])}: the fast path is off ({pct} of payload bytes by "
            "zero-copy calls)"
        )
    return (
        f"{pct} of payload bytes moved by zero-copy calls: {_through(zero_copy[0])}, "
        f"but {_through(copied[0])}"
    )


def _via(flow: Flow) -> str:
    """``sendfile``, ``read/sendto``: the calls of a flow, reads first."""
    return "/".join(n for n, _ in calls_in_order(flow)) or "?"


def _through(flow: Flow) -> str:
    calls = flow.calls
    if not calls:
        return f"{size(flow.bytes)} went {flow.label}"
    # A read/write pair moves one chunk in two calls: the chunk is what a reader recognises.
    per = flow.bytes / calls * (2 if flow.via is Via.COPY and len(flow.syscalls) > 1 else 1)
    plural = "call" if calls == 1 else "calls"
    return (
        f"{size(flow.bytes)} went {flow.label} through {calls:,} {_via(flow)} {plural} "
        f"of {size(per)}"
    )


def _no_data(report: Report) -> str:
    payload = report.payload_bytes
    said = (
        f"only {size(payload)} moved from fd to fd (under the {size(report.min_bytes)} floor)"
        if payload
        else "nothing moved from fd to fd"
    )
    extra = []
    if report.from_memory_bytes:
        extra.append(f"{size(report.from_memory_bytes)} was written from memory")
    if report.into_memory_bytes:
        extra.append(f"{size(report.into_memory_bytes)} was read into memory")
    tail = f" ({'; '.join(extra)}: no zero-copy call could move those)" if extra else ""
    return f"{said}{tail}: no fast path to judge"


def as_dict(report: Report) -> dict[str, object]:
    """The ``--json`` object (the schema docs/trace.md documents).

    >>> from zcopy.tools.flows import analyse
    >>> as_dict(analyse([]))["verdict"]
    'no-data'
    """
    return {
        "verdict": report.verdict.value,
        "telltale": telltale(report),
        "backend": report.backend,
        "zero_copy_bytes": report.zero_copy_bytes,
        "copied_bytes": report.copied_bytes,
        "zero_copy_share": report.zero_copy_share,
        "from_memory_bytes": report.from_memory_bytes,
        "into_memory_bytes": report.into_memory_bytes,
        "min_bytes": report.min_bytes,
        "syscalls": {
            name: {
                "calls": row.calls,
                "bytes": row.bytes,
                "errors": row.errors,
                "eagain": row.eagain,
                "average": row.average,
            }
            for name, row in sorted(report.syscalls.items())
        },
        "flows": [
            {
                "src": f.src,
                "dst": f.dst,
                "via": f.via.value,
                "bytes": f.bytes,
                "calls": f.calls,
                "syscalls": dict(f.syscalls),
            }
            for f in report.flows
        ],
        "notes": list(report.notes),
    }


def render_json(report: Report) -> str:
    """The ``--json`` object, one line.

    >>> from zcopy.tools.flows import analyse
    >>> json.loads(render_json(analyse([], backend="strace")))["verdict"]
    'no-data'
    """
    return json.dumps(as_dict(report))


def render_text(report: Report) -> str:
    """The human report: table, flows, verdict.

    >>> from zcopy.tools.flows import analyse
    >>> print(render_text(analyse([], backend="strace")).splitlines()[-1])
    verdict: no-data - nothing moved from fd to fd: no fast path to judge
    """
    out = [f"zcopy trace: backend {report.backend}", ""]
    out += _table(report)
    out.append("")
    out += _flows(report.flows)
    out.append("")
    for note in report.notes:
        out.append(f"note: {note}")
    share = report.zero_copy_share
    if share is not None:
        out.append(
            f"zero-copy share of payload: {percent(share)} "
            f"({size(report.zero_copy_bytes)} zero-copy, {size(report.copied_bytes)} copied)"
        )
    out.append(f"verdict: {report.verdict.value} - {telltale(report)}")
    return "\n".join(out)


def _table(report: Report) -> list[str]:
    if not report.syscalls:
        return ["no data-path syscalls were seen"]
    head = f"{'syscall':<16}{'calls':>10}{'bytes':>12}{'avg/call':>11}{'errors':>8}{'EAGAIN':>8}"
    lines = [head, "-" * len(head)]
    rows = sorted(report.syscalls.items(), key=lambda kv: (-kv[1].bytes, kv[0]))
    for name, row in rows:
        lines.append(
            f"{name:<16}{row.calls:>10,}{size(row.bytes):>12}{size(row.average):>11}"
            f"{row.errors:>8,}{row.eagain:>8,}"
        )
    return lines


def _flows(flows: list[Flow]) -> list[str]:
    moved = [f for f in flows if f.bytes > 0]
    if not moved:
        return ["flows: none"]
    lines = ["flows (by endpoint kind)"]
    floor = moved[0].bytes * _SMALL
    small = [f for f in moved if f.bytes < floor]
    for f in moved:
        if f.bytes < floor:
            continue
        calls = ", ".join(f"{n:,} {name}" for name, n in calls_in_order(f))
        lines.append(f"  {f.label:<20}{f.via:<13}{size(f.bytes):>11}   {calls}")
    if small:
        total = sum(f.bytes for f in small)
        lines.append(f"  ({len(small)} smaller flows, {size(total)} in all)")
    return lines
