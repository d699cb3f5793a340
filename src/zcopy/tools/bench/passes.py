"""One pass: start the measured process, run the client's transfers, take the kernel's figures.

A pass is the unit everything else repeats: the CPU passes (``--repeat``
times per mode), the strace pass and the py-spy pass are the same pass with a
witness attached or not. Every process it starts is ended before it returns,
whatever happened.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import strace_pass
from .measure import Cpu, CpuTimes, Figures, cpu_of, cpu_times_of, faults_of, figures, others_share
from .modes import EXTRA_MODES, MODES
from .procs import Child, ChildFailed, Children

READY_TIMEOUT = 60.0
# A single transfer slower than this is a hang, not a measurement.
TRANSFER_TIMEOUT = 300.0
SERVER_CPU, CLIENT_CPU = 0, 1


@dataclass(frozen=True, slots=True)
class PassSpec:
    """What to run: a mode over a file, so many transfers, pinned or not."""

    mode: str
    file: str
    size: int
    crc: int
    transfers: int
    pin: bool
    bufsize: int | None = None


@dataclass(slots=True)
class PassResult:
    """What a pass saw. ``error`` is set when it did not finish; the rest is what it got to."""

    transfers_ok: int = 0
    moved: int = 0
    wall_s: float = 0.0
    cpu: Cpu | None = None
    softirq_s: float | None = None
    core: CpuTimes | None = None  # the server's core during the pass (pinned only)
    window_s: float = 0.0
    page_faults: int | None = None
    syscalls: dict[str, int] | None = None
    file_reads: int | None = None
    error: str | None = None

    @property
    def figures(self) -> Figures | None:
        """The study's figures for this pass (``None`` unless it finished and was measured)."""
        if self.error is not None or self.cpu is None:
            return None
        others = None if self.core is None else others_share(self.core, self.cpu, self.window_s)
        return figures(self.cpu, self.moved, self.wall_s, self.softirq_s, self.page_faults,
                       others)


def server_argv(spec: PassSpec, mode: str | None = None) -> list[str]:
    """The command line of a bench server for ``spec`` (``mode`` overrides the spec's).

    >>> server_argv(PassSpec("raw", "/f", 9, 1, 2, True))[2:]
    ['zcopy.tools.bench.server', 'raw', '/f', '9', '2']
    """
    argv = [sys.executable, "-m", "zcopy.tools.bench.server", mode or spec.mode, spec.file,
            str(spec.size), str(spec.transfers)]
    if spec.bufsize is not None:
        argv += ["--bufsize", str(spec.bufsize)]
    return argv


def proxy_argv(upstream_port: int, splice: bool) -> list[str]:
    """``zcopy proxy`` in front of the upstream, exactly as a user would start it.

    >>> proxy_argv(9, False)[3:]
    ['proxy', '--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--no-splice']
    """
    argv = [sys.executable, "-m", "zcopy.cli", "proxy", "--listen", "127.0.0.1:0",
            "--upstream", f"127.0.0.1:{upstream_port}"]
    return argv if splice else [*argv, "--no-splice"]


def py_spy() -> str | None:
    """The py-spy executable: on PATH or beside this Python."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else None


def _start_measured(kids: Children, spec: PassSpec) -> tuple[Child, int]:
    """Start the measured process (server, or proxy before a raw server); return it and its port."""
    srv_cpu = SERVER_CPU if spec.pin else None
    mode = MODES.get(spec.mode) or EXTRA_MODES[spec.mode]
    if mode.proxy_splice is None:
        server = kids.start("server", server_argv(spec), cpu=srv_cpu)
        return server, int(server.expect("ready ", READY_TIMEOUT))
    # The upstream is cheap (sendfile); it shares the client's CPU so the proxy has CPU 0 alone.
    upstream = kids.start("upstream", server_argv(spec, "raw"),
                          cpu=CLIENT_CPU if spec.pin else None)
    up_port = int(upstream.expect("ready ", READY_TIMEOUT))
    proxy = kids.start("proxy", proxy_argv(up_port, mode.proxy_splice), cpu=srv_cpu,
                       eof_stops=False)
    ready = proxy.wait_stderr(r"listening on \S*?:(\d+)\b", READY_TIMEOUT)
    return proxy, int(ready[1])


def run_pass(
    spec: PassSpec,
    workdir: Path,
    run_id: str,
    on_transfer: Callable[[int], object] = lambda n: None,
    *,
    trace: bool = False,
    flamegraph: Path | None = None,
) -> PassResult:
    """Run one pass; never raises for a failure of the processes, sets ``error`` instead."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = PassResult()
    measured: Child | None = None
    with Children(workdir, run_id) as kids:
        try:
            measured, port = _start_measured(kids, spec)
            tracer = out = profiler = None
            if trace:
                out = workdir / "strace.out"
                tracer = strace_pass.attach(kids, measured.pid, out)
            if flamegraph is not None:
                profiler = _start_profiler(kids, measured.pid, flamegraph)
            before = cpu_of(measured.pid)
            faults_before = faults_of(measured.pid)
            core_before = cpu_times_of(SERVER_CPU) if spec.pin else None
            started = time.monotonic()
            _run_client(kids, spec, port, result, on_transfer)
            if measured.name == "server":
                measured.expect("done", READY_TIMEOUT)
            else:
                time.sleep(0.2)  # the proxy closes its two sockets after the client's EOF
            result.cpu = cpu_of(measured.pid) - before
            result.page_faults = faults_of(measured.pid) - faults_before
            if core_before is not None:
                result.core = cpu_times_of(SERVER_CPU) - core_before
                result.softirq_s = result.core.softirq
                result.window_s = time.monotonic() - started
            if tracer is not None and out is not None:
                result.syscalls, result.file_reads = strace_pass.collect(tracer, out, spec.file)
            if profiler is not None:
                _stop_profiler(profiler, flamegraph)
        except (ChildFailed, OSError, ValueError) as exc:
            result.error = _explain(spec, measured, result, exc)
    return result


def _run_client(kids: Children, spec: PassSpec, port: int, result: PassResult,
                on_transfer: Callable[[int], object]) -> None:
    client = kids.start(
        "client",
        [sys.executable, "-m", "zcopy.tools.bench.client", str(port), str(spec.transfers),
         str(spec.size), str(spec.crc)],
        cpu=CLIENT_CPU if spec.pin else None,
    )
    for _ in range(spec.transfers):
        line = client.read_line(TRANSFER_TIMEOUT)
        if line is None:
            raise ChildFailed(f"the client exited{client.status()}{client.tail()}")
        got = json.loads(line)
        if not got["ok"]:
            raise ChildFailed(f"transfer {got['i'] + 1} failed verification: {got['error']}")
        result.transfers_ok += 1
        result.moved += int(got["bytes"])
        result.wall_s += float(got["wall_s"])
        on_transfer(int(got["bytes"]))
    client.proc.wait(READY_TIMEOUT)


def _explain(spec: PassSpec, measured: Child | None, result: PassResult, exc: Exception) -> str:
    what = "zcopy proxy" if measured is not None and measured.name == "proxy" else "server"
    if measured is not None:
        time.sleep(0.1)  # let a dying server finish dying, so its exit code is known
        if measured.proc.poll() is not None:
            return (f"{spec.mode}: the {what} crashed (exit code {measured.proc.returncode}) "
                    f"after {result.transfers_ok} of {spec.transfers} transfers{measured.tail()}")
    return f"{spec.mode}: {exc}"


def _start_profiler(kids: Children, pid: int, svg: Path) -> Child:
    exe = py_spy()
    if exe is None:
        raise ChildFailed("py-spy is not installed: pip install 'zcopy[flamegraph]'")
    # argv[0] "py-spy": the SVG's title shows the command line, without this machine's paths.
    profiler = kids.start("py-spy", ["py-spy", "record", "--pid", str(pid), "--output", str(svg),
                                     "--format", "flamegraph", "--rate", "250", "--native"],
                          eof_stops=False, executable=exe)
    time.sleep(1.0)  # py-spy has no "attached" signal; give it time to start sampling
    if profiler.proc.poll() is not None:
        raise ChildFailed(f"py-spy could not attach{profiler.status()}{profiler.tail()}")
    return profiler


def _stop_profiler(profiler: Child, svg: Path | None) -> None:
    profiler.proc.send_signal(signal.SIGINT)  # py-spy writes the SVG on Ctrl-C
    try:
        profiler.proc.wait(60)
    except subprocess.TimeoutExpired:
        pass
    if svg is not None and not svg.exists():
        raise ChildFailed(f"py-spy wrote no flamegraph{profiler.tail()}")
