"""A trace report in words: the per-syscall table, the flows, and the verdict."""

from __future__ import annotations

import json

from .flows import Flow, Report, calls_in_order, percent, size

# Flows smaller than this share of the biggest one are summed into one line: stray
# header or log bytes paired with an earlier read are noise next to the payload.
_SMALL = 0.001


def render_json(report: Report) -> str:
    """The ``--json`` object, one line.

    >>> from zcopy.tools.flows import analyse
    >>> json.loads(render_json(analyse([], backend="strace")))["verdict"]
    'no-data'
    """
    return json.dumps(report.as_dict())


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
    out.append(f"verdict: {report.verdict} - {report.telltale}")
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
