"""``zcopy trace``: run or attach to a process and say whether its bytes take the fast path.

``zcopy trace -- CMD [ARGS...]`` runs a command under the tracer until it
exits (or until Ctrl-C / ``--seconds``); ``zcopy trace --pid PID`` attaches
to a running process with its threads and children. The analysis is in
``flows.py``, the words in ``report.py``, each tracer's runner beside its
parser (``strace.py``, ``bpftrace.py``); this module chooses and reports.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from . import bpftrace, strace
from ._proc import TraceError
from .flows import MIN_BYTES, Report, Verdict, analyse, events_from_strace
from .report import render_json, render_text

VERDICTS = tuple(v.value for v in Verdict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``zcopy trace``.

    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["--json", "--", "sleep", "1"]).cmd
    ['--', 'sleep', '1']
    """
    parser.add_argument("--pid", type=int, help="attach to this running process")
    parser.add_argument(
        "--seconds", type=float, help="stop after this many seconds (default: until it exits)"
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "strace", "bpftrace"),
        default="auto",
        help="auto: bpftrace for --pid when installed and permitted, else strace",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("-o", "--output", help="write the report to this file, not stdout")
    parser.add_argument(
        "--min-bytes",
        type=int,
        default=MIN_BYTES,
        help="payload under this many bytes is no-data (default: 1 MiB)",
    )
    parser.add_argument(
        "--expect", choices=VERDICTS, help="exit with status 1 unless the verdict is this one"
    )
    parser.add_argument("--keep-trace", metavar="FILE", help="keep the raw strace output here")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...] to run")


def run(args: argparse.Namespace) -> int:
    """Run ``zcopy trace``; 0 on a report, 1 on an ``--expect`` miss, 2 when it cannot trace.

    >>> run(argparse.Namespace(cmd=[], pid=None))  # neither a command nor a pid
    2
    """
    cmd = list(args.cmd or [])
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if bool(cmd) == (args.pid is not None):
        print("zcopy trace: give either --pid PID or -- CMD [ARGS...]", file=sys.stderr)
        return 2
    try:
        report = trace(
            cmd or None,
            pid=args.pid,
            seconds=args.seconds,
            backend=args.backend,
            min_bytes=args.min_bytes,
            keep_trace=args.keep_trace,
        )
    except TraceError as exc:
        print(f"zcopy trace: {exc}", file=sys.stderr)
        return 2
    text = render_json(report) if args.json else render_text(report)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text, flush=True)
    if args.expect and report.verdict != args.expect:
        print(f"zcopy trace: expected {args.expect}, got {report.verdict}", file=sys.stderr)
        return 1
    return 0


def trace(
    cmd: list[str] | None,
    *,
    pid: int | None = None,
    seconds: float | None = None,
    backend: str = "auto",
    min_bytes: int = MIN_BYTES,
    keep_trace: str | None = None,
) -> Report:
    """Trace ``cmd`` (run) or ``pid`` (attach) and analyse what moved.

    For example (it needs a tracer, so it is not a doctest)::

        trace(["true"], backend="strace").verdict   # 'no-data': nothing moved
    """
    chosen = choose_backend(backend, attach=pid is not None)
    if chosen == "bpftrace":
        events = bpftrace.record(cmd, pid, seconds)
        return analyse(events, backend="bpftrace", min_bytes=min_bytes, notes=[bpftrace.NOTE])
    calls, tgids = strace.record(cmd, pid, seconds, keep_trace)
    return analyse(events_from_strace(calls, tgids), backend="strace", min_bytes=min_bytes)


def choose_backend(backend: str, *, attach: bool) -> str:
    """The backend that will run, or TraceError saying why the asked one cannot.

    For example, where strace may trace (the answer depends on the machine)::

        choose_backend("strace", attach=False)   # 'strace'
        choose_backend("auto", attach=True)      # 'bpftrace' when usable, else 'strace'
    """
    if backend == "bpftrace" or (backend == "auto" and attach):
        why = bpftrace.unavailable_reason()
        if why is None:
            return "bpftrace"
        if backend == "bpftrace":
            raise TraceError(f"cannot use the bpftrace backend: {why}")
    if shutil.which("strace") is None:
        also = ", and bpftrace is not usable" if backend == "auto" and attach else ""
        raise TraceError(f"no tracer: strace is not installed (apt-get install -y strace){also}")
    why = strace.unavailable_reason()
    if why is not None:
        raise TraceError(f"{why}; run as root or allow ptrace")
    return "strace"
