"""``zcopy trace``: run or attach to a process and say whether its bytes take the fast path.

``zcopy trace -- CMD [ARGS...]`` runs a command under the tracer until it
exits (or until Ctrl-C / ``--seconds``); ``zcopy trace --pid PID`` attaches
to a running process with its threads and children. The analysis is in
``flows.py``, the words in ``report.py``; this module runs the tracers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import bpftrace, strace
from .flows import MIN_BYTES, Event, Report, analyse, events_from_strace
from .report import render_json, render_text

VERDICTS = ("fast-path", "user-space", "mixed", "no-data")
# After a stop request, how long the traced command gets before SIGINT, SIGTERM, SIGKILL.
_GRACE = (1.0, 5.0, 5.0, 5.0)


class TraceError(RuntimeError):
    """The trace could not be taken; the message says why."""


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

    >>> run(argparse.Namespace(cmd=[], pid=None))  # doctest: +SKIP
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

    >>> trace(["true"], backend="strace").verdict  # doctest: +SKIP
    'no-data'
    """
    chosen = choose_backend(backend, attach=pid is not None)
    if chosen == "bpftrace":
        events = _bpftrace(cmd, pid, seconds)
        return analyse(events, backend="bpftrace", min_bytes=min_bytes, notes=[bpftrace.NOTE])
    calls, tgids = _strace(cmd, pid, seconds, keep_trace)
    return analyse(events_from_strace(calls, tgids), backend="strace", min_bytes=min_bytes)


def choose_backend(backend: str, *, attach: bool) -> str:
    """The backend that will run, or TraceError saying why the asked one cannot.

    >>> choose_backend("strace", attach=False)  # doctest: +SKIP
    'strace'
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
    if not strace.available():
        raise TraceError(
            "strace may not trace here (ptrace is forbidden: a container without "
            "CAP_SYS_PTRACE, or kernel.yama.ptrace_scope); run as root or allow ptrace"
        )
    return "strace"


# --- processes -------------------------------------------------------------------------


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, parents first.

    >>> descendants(os.getpid())[0] == os.getpid()
    True
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _ppid(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo += sorted(children.get(pid, []))
    return found


def tasks(pids: list[int]) -> dict[int, int]:
    """Thread id -> process id for the live threads of ``pids``.

    >>> tasks([os.getpid()])[os.getpid()] == os.getpid()
    True
    """
    out = {}
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                out[int(tid)] = pid
        except OSError:
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has stopped moving bytes


def _check_pid(pid: int) -> None:
    if not Path(f"/proc/{pid}").exists():
        raise TraceError(f"no process with pid {pid}")


@contextmanager
def _stop_requests() -> Iterator[Callable[[], bool]]:
    """SIGINT/SIGTERM to zcopy become a stop request instead of killing the report."""
    asked = threading.Event()

    def handler(signum: int, frame: object) -> None:
        asked.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked.is_set
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _wait(
    done: Callable[[], bool],
    stop_asked: Callable[[], bool],
    seconds: float | None,
    stop: Callable[[int], None],
) -> None:
    """Poll until ``done``; on a stop request or timeout call ``stop(step)`` stepwise."""
    start = time.monotonic()
    stop_at: float | None = None
    step = 0
    while not done():
        now = time.monotonic()
        if stop_at is None and (stop_asked() or (seconds is not None and now - start >= seconds)):
            # A Ctrl-C at the terminal reached the command too: give it a moment first.
            stop_at = now + (_GRACE[0] if stop_asked() else 0.0)
        if stop_at is not None and now >= stop_at:
            stop(step)
            step += 1
            stop_at = now + _GRACE[min(step, len(_GRACE) - 1)]
        time.sleep(0.05)


def _signal_for(step: int) -> signal.Signals:
    return (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[min(step, 2)]


def _announce(what: str) -> None:
    print(f"zcopy trace: {what}; Ctrl-C to stop", file=sys.stderr, flush=True)


# --- strace ----------------------------------------------------------------------------


def _strace(
    cmd: list[str] | None, pid: int | None, seconds: float | None, keep: str | None
) -> tuple[list[strace.Call], dict[int, int]]:
    syscalls = (*strace.DATA_SYSCALLS, *strace.PROCESS_SYSCALLS)
    with tempfile.TemporaryDirectory(prefix="zcopy-trace-") as tmp:
        out = keep or os.path.join(tmp, "strace.out")
        err_path = os.path.join(tmp, "strace.err")
        tgids: dict[int, int] = {}
        with _stop_requests() as stop_asked:
            if cmd is not None:
                if shutil.which(cmd[0]) is None:
                    raise TraceError(f"command not found: {cmd[0]}")
                proc = subprocess.Popen([*strace.command(out, syscalls), *cmd])

                def stop(step: int) -> None:
                    _stop_tree(proc.pid, step)

                _wait(lambda: proc.poll() is not None, stop_asked, seconds, stop)
            else:
                assert pid is not None
                _check_pid(pid)
                pids = descendants(pid)
                tgids = tasks(pids)
                with open(err_path, "w") as err:
                    proc = subprocess.Popen(
                        strace.attach_command(out, pids, syscalls),
                        stderr=err,
                        start_new_session=True,
                    )
                _await_attach(proc, pid, err_path)
                _announce(f"attached to pid {pid} with strace")

                def stop(step: int) -> None:
                    _kill(proc.pid, _signal_for(step))  # strace detaches on SIGINT

                _wait(lambda: proc.poll() is not None, stop_asked, seconds, stop)
                if proc.returncode not in (0, -signal.SIGINT) and not Path(out).stat().st_size:
                    raise TraceError(f"strace failed: {Path(err_path).read_text().strip()}")
        with open(out, errors="replace") as f:
            calls = strace.parse_lines(f)
    return calls, tgids


def _stop_tree(tracer: int, step: int) -> None:
    """Stop what ``tracer`` runs: SIGINT to the command, then SIGTERM and SIGKILL to all of it.

    The first, gentle step goes to the command alone so a master process can shut its
    workers down itself; strace, which blocks fatal signals while it runs a command, is
    killed only if its processes will not go.
    """
    tree = descendants(tracer)[1:]
    if step == 0:
        targets = tree[:1]
    elif step <= 2:
        targets = tree
    else:
        targets = [tracer]
    for pid in targets:
        _kill(pid, _signal_for(step))


def _await_attach(proc: subprocess.Popen[bytes], pid: int, err_path: str) -> None:
    """Wait until strace is the tracer of ``pid``, so nothing after the banner is missed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TraceError(f"strace could not attach: {Path(err_path).read_text().strip()}")
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError as exc:
            raise TraceError(f"process {pid} went away") from exc
        for line in status.splitlines():
            if line.startswith("TracerPid:") and int(line.split()[1]) == proc.pid:
                return
        time.sleep(0.02)
    _kill(proc.pid, signal.SIGKILL)
    raise TraceError("strace did not attach within 30 s")


def _kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# --- bpftrace --------------------------------------------------------------------------


def _bpftrace(
    cmd: list[str] | None, pid: int | None, seconds: float | None
) -> list[Event]:
    gate_w: int | None = None
    target: subprocess.Popen[bytes] | None = None
    if cmd is not None:
        if shutil.which(cmd[0]) is None:
            raise TraceError(f"command not found: {cmd[0]}")
        # The command waits at a gate until the probes are in, so its first bytes count too.
        gate_r, gate_w = os.pipe()
        gate = (
            "import os, sys\n"
            f"if os.read({gate_r}, 3) != b'go\\n': sys.exit(111)\n"
            f"os.close({gate_r}); os.execvp(sys.argv[1], sys.argv[1:])\n"
        )
        target = subprocess.Popen([sys.executable, "-c", gate, *cmd], pass_fds=(gate_r,))
        os.close(gate_r)
        pids = [target.pid]
    else:
        assert pid is not None
        _check_pid(pid)
        pids = descendants(pid)
    with tempfile.TemporaryDirectory(prefix="zcopy-trace-") as tmp:
        prog = os.path.join(tmp, "trace.bt")
        Path(prog).write_text(bpftrace.script(pids, bpftrace.present()))
        err_path = os.path.join(tmp, "bpftrace.err")
        with open(err_path, "w") as err:
            tracer = subprocess.Popen(
                ["bpftrace", prog], stdout=subprocess.PIPE, stderr=err, text=True,
                start_new_session=True,
            )
        assert tracer.stdout is not None
        lines: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            assert tracer.stdout is not None
            for line in tracer.stdout:
                if line.strip() == bpftrace.READY:
                    ready.set()
                lines.append(line)
            ready.set()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            if not ready.wait(60) or tracer.poll() is not None:
                raise TraceError(f"bpftrace failed: {_bpftrace_error(err_path)}")
            if gate_w is not None:
                os.write(gate_w, b"go\n")
                os.close(gate_w)
                gate_w = None
            with _stop_requests() as stop_asked:
                if target is not None:
                    t = target
                    _announce(f"running {cmd[0] if cmd else ''} under bpftrace")

                    def stop(step: int) -> None:
                        _kill(t.pid, _signal_for(step))

                    _wait(lambda: t.poll() is not None, stop_asked, seconds, stop)
                else:
                    assert pid is not None
                    _announce(f"attached to pid {pid} with bpftrace")
                    stopped: list[bool] = []
                    root = pid
                    _wait(
                        lambda: bool(stopped) or not _alive(root),
                        stop_asked,
                        seconds,
                        lambda step: stopped.append(True),
                    )
        finally:
            if gate_w is not None:
                os.close(gate_w)  # the gated command exits 111 instead of running untraced
            if target is not None and target.poll() is None:
                target.kill()
                target.wait()
            if tracer.poll() is None:
                tracer.send_signal(signal.SIGINT)  # bpftrace prints its maps at exit
            try:
                tracer.wait(60)
            except subprocess.TimeoutExpired:
                tracer.kill()
                tracer.wait()
            reader.join(10)
    return bpftrace.parse_output(lines)


def _bpftrace_error(err_path: str) -> str:
    text = Path(err_path).read_text()
    useful = [ln for ln in text.splitlines() if "RLIMIT_MEMLOCK" not in ln and ln.strip()]
    return "\n".join(useful) or "it exited without output"
