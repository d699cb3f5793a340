"""``zcopy trace``: run or attach to a process and say whether its bytes take the fast path.

``zcopy trace -- CMD [ARGS...]`` runs a command under the tracer until it
exits (or until Ctrl-C / ``--seconds``); ``zcopy trace --pid PID`` attaches
to a running process with its threads and children. The analysis is in
``flows.py``, the words in ``report.py``, each tracer's runner beside its
parser (``strace.py``, ``bpftrace.py``); this module chooses and reports.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..daemon.log import say, startup_failed
from . import bpftrace, strace
from ._proc import TraceError
from .flows import MIN_BYTES, Report, Verdict, analyse
from .report import render_json, render_text

VERDICTS = tuple(v.value for v in Verdict)
NAME = "zcopy trace"
# Exit statuses of zcopy trace itself; otherwise it exits with the traced command's.
EXPECT_MISSED = 1
CANNOT_TRACE = 2


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
    parser.add_argument(
        "--json", action="store_true",
        help="print one JSON object on stdout (a traced command's stdout goes to stderr)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE",
        help="write the report to FILE, not stdout (the command keeps stdout)",
    )
    parser.add_argument(
        "--min-bytes",
        type=int,
        default=MIN_BYTES,
        help="payload under this many bytes is no-data (default: 1 MiB)",
    )
    parser.add_argument(
        "--expect", choices=VERDICTS,
        help=f"exit with status {EXPECT_MISSED} unless the verdict is this one",
    )
    parser.add_argument("--keep-trace", metavar="FILE", help="keep the raw strace output here")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...] to run")
    parser.epilog = (
        f"exit status: the command's own (as time and strace give it); {EXPECT_MISSED} when "
        f"--expect is not met; {CANNOT_TRACE} when no trace could be taken; 0 with --pid"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``zcopy trace``; its exit status (see ``exit_status``).

    >>> run(argparse.Namespace(cmd=[], pid=None))  # neither a command nor a pid
    2
    """
    cmd = list(args.cmd or [])
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if bool(cmd) == (args.pid is not None):
        startup_failed(NAME, "give either --pid PID or -- CMD [ARGS...]")
        return CANNOT_TRACE
    # JSON alone on stdout: the traced command's stdout goes to stderr, unless -o takes the report.
    quiet_stdout = bool(cmd) and args.json and not args.output
    with tempfile.TemporaryDirectory(prefix="zcopy-trace-") as tmp:
        raw = args.keep_trace or os.path.join(tmp, "strace.out")
        try:
            with _stdout_to_stderr() if quiet_stdout else contextlib.nullcontext():
                report = trace(
                    cmd or None,
                    pid=args.pid,
                    seconds=args.seconds,
                    backend=args.backend,
                    min_bytes=args.min_bytes,
                    keep_trace=raw if cmd else args.keep_trace,
                )
        except TraceError as exc:
            startup_failed(NAME, str(exc))
            return CANNOT_TRACE
        status = _command_status(raw) if cmd else None
    text = render_json(report) if args.json else render_text(report)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text, flush=True)
    missed = args.expect is not None and report.verdict != args.expect
    if missed:
        say(NAME, f"expected {args.expect}, got {report.verdict}")
    return exit_status(missed, status)


def exit_status(expect_missed: bool, command_status: int | None) -> int:
    """An ``--expect`` miss is 1 whatever the command did; else the command's own status.

    As ``time`` and ``strace`` do, so ``zcopy trace -- CMD`` can stand in for ``CMD``
    in a script. Attaching (``--pid``), or a backend that cannot tell it, gives 0.

    >>> exit_status(False, 3), exit_status(True, 0), exit_status(False, None)
    (3, 1, 0)
    """
    if expect_missed:
        return EXPECT_MISSED
    return command_status or 0


def _command_status(raw_trace: str) -> int | None:
    try:
        with open(raw_trace, errors="replace") as f:
            return strace.exit_status(f)
    except FileNotFoundError:  # the bpftrace backend keeps no strace output
        return None


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point fd 1 at stderr while the command runs (it inherits it), then restore it."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


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
    return analyse(strace.events_from_strace(calls, tgids), backend="strace", min_bytes=min_bytes)


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
