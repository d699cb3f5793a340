"""Processes and the machine as the kernel accounts them: one toolkit for the tools and benchmarks.

What ``zcopy trace``, ``zcopy bench`` and the benchmarks in ``benchmarks/``
need to know about a process from outside it: its tree (``descendants``),
its threads (``threads``), whether it lives and who traces it, how to stop
what it started (``stop_requests``, ``wait_until``), the CPU it
used (``cpu_of``: clock ticks from ``/proc/PID/stat`` and the nanosecond run
time from ``schedstat``), its memory; about a CPU, how busy it was; about the
machine, the facts a result is labelled with. And the two small numerical
helpers every benchmark reports with (``median``, ``spread``), and
``free_port``. The parsers (``parse_*``) are pure, so they are tested on text.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class TraceError(RuntimeError):
    """A process could not be run, attached to or traced; the message says why."""


# --- processes -------------------------------------------------------------------------


def _stat_fields(text: str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command, which may hold spaces and ``)``.

    ``fields[0]`` is field 3 of proc(5) (state), so field N is ``fields[N - 3]``.

    >>> _stat_fields("42 (a) b) S 1 2")[:2]
    ['S', '1']
    """
    return text[text.rindex(")") + 2 :].split()


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # gone while we looked, or not ours to read
        return None


def parent_of(pid: int) -> int | None:
    """The parent's pid, or None when ``pid`` is gone.

    >>> parent_of(os.getpid()) == os.getppid()
    True
    """
    stat = _read(f"/proc/{pid}/stat")
    return int(_stat_fields(stat)[1]) if stat else None


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> its children's pids (zombies too), from one scan of ``/proc``.

    It does not rely on ``/proc/PID/task/TID/children`` (``CONFIG_PROC_CHILDREN``),
    which also lists only the children one thread forked.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    return children


def children(pid: int) -> list[int]:
    """The processes ``pid`` started that have not been reaped yet, oldest pid first.

    >>> import subprocess
    >>> child = subprocess.Popen(["sleep", "5"])
    >>> child.pid in children(os.getpid())
    True
    >>> child.kill(); child.wait()
    -9
    """
    return sorted(_children_map().get(pid, []))


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it, parents first.

    >>> descendants(os.getpid())[0] == os.getpid()
    True
    """
    tree = _children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo += sorted(tree.get(pid, []))
    return found


def require_process(pid: int) -> None:
    """TraceError unless ``pid`` is a live process.

    >>> require_process(os.getpid())
    """
    if not os.path.exists(f"/proc/{pid}"):
        raise TraceError(f"no process with pid {pid}")


def require_command(name: str) -> None:
    """TraceError unless ``name`` is a command found on PATH (or a path to one).

    >>> require_command("no-such-command-zcopy")
    Traceback (most recent call last):
    ...
    zcopy.tools._proc.TraceError: command not found: no-such-command-zcopy
    """
    if shutil.which(name) is None:
        raise TraceError(f"command not found: {name}")


def threads(pids: Iterable[int]) -> dict[int, int]:
    """Thread id -> process id for the live threads of ``pids``.

    >>> threads([os.getpid()])[os.getpid()] == os.getpid()
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


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a zombie has stopped moving bytes).

    >>> alive(os.getpid())
    True
    """
    stat = _read(f"/proc/{pid}/stat")
    return stat is not None and _stat_fields(stat)[0] != "Z"


def tracer_of(pid: int) -> int:
    """The pid tracing ``pid`` (0: none, or ``pid`` is gone), from ``/proc/PID/status``.

    >>> tracer_of(os.getpid()) >= 0
    True
    """
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return 0


def fd_targets(pid: int) -> list[str]:
    """What the open fds of ``pid`` point at (``/proc/PID/fd`` links); [] when it is gone.

    >>> r, w = os.pipe()
    >>> sum(t.startswith("pipe:") for t in fd_targets(os.getpid())) >= 2
    True
    >>> os.close(r); os.close(w)
    """
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    out = []
    for name in names:
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:  # closed while we looked
            continue
    return out


def parse_memory(status: str) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB from the text of ``/proc/PID/status`` (0 when absent).

    >>> parse_memory("Name:\\tx\\nVmHWM:\\t  900 kB\\nVmRSS:\\t  800 kB\\n")
    (800, 900)
    """
    rss = hwm = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def memory_kib(pids: Iterable[int]) -> tuple[int, int]:
    """(VmRSS, VmHWM) summed over ``pids``, in KiB (a process gone counts 0).

    >>> memory_kib([os.getpid()])[0] > 0
    True
    """
    rss = hwm = 0
    for pid in pids:
        one = parse_memory(_read(f"/proc/{pid}/status") or "")
        rss, hwm = rss + one[0], hwm + one[1]
    return rss, hwm


def reset_peak_memory(pids: Iterable[int]) -> bool:
    """Reset each VmHWM to the current RSS (``5 > clear_refs``); False if any refused.

    >>> reset_peak_memory([])
    True
    """
    ok = True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


# --- stopping what we started ----------------------------------------------------------------


def kill(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid`` if it is still there.

    >>> kill(2 ** 22 + 1, signal.SIGTERM)  # no such process: nothing to do
    """
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def signal_for(step: int) -> signal.Signals:
    """The signal of a stop's ``step``: SIGINT first, then SIGTERM, then SIGKILL.

    >>> [signal_for(n).name for n in range(4)]
    ['SIGINT', 'SIGTERM', 'SIGKILL', 'SIGKILL']
    """
    return (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[min(step, 2)]


@contextmanager
def stop_requests() -> Iterator[Callable[[], bool]]:
    """SIGINT/SIGTERM to this process become a stop request it polls, not an exit.

    >>> with stop_requests() as asked:
    ...     asked()
    False
    """
    asked = threading.Event()

    def handler(signum: int, frame: object) -> None:
        asked.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked.is_set
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def wait_until(
    done: Callable[[], bool],
    stop_asked: Callable[[], bool],
    seconds: float | None,
    stop: Callable[[int], None],
    grace: Sequence[float] = (1.0, 5.0, 5.0, 5.0),
) -> None:
    """Poll until ``done``; on a stop request or after ``seconds`` call ``stop(step)`` stepwise.

    ``grace[0]`` is how long a stop request waits before step 0 (a Ctrl-C at
    the terminal reached the command too: it gets a moment to go by itself);
    ``grace[n]`` how long step n-1 gets before step n.

    >>> steps = []
    >>> wait_until(lambda: len(steps) > 1, lambda: False, 0.0, steps.append, (0, 0))
    >>> steps
    [0, 1]
    """
    start = time.monotonic()
    stop_at: float | None = None
    step = 0
    while not done():
        now = time.monotonic()
        if stop_at is None and (stop_asked() or (seconds is not None and now - start >= seconds)):
            stop_at = now + (grace[0] if stop_asked() else 0.0)
        if stop_at is not None and now >= stop_at:
            stop(step)
            step += 1
            stop_at = now + grace[min(step, len(grace) - 1)]
        time.sleep(0.05)


# --- CPU of a process --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cpu:
    """User and system CPU seconds (clock ticks), and the run time in nanoseconds' precision.

    ``run`` is the sum of the threads' ``sum_exec_runtime`` from
    ``/proc/PID/task/*/schedstat``: the same CPU time the kernel scales utime
    and stime from, without their 10 ms granularity. ``None`` when unknown.

    >>> (Cpu(1.0, 2.0, 3.0) - Cpu(0.5, 0.5, 1.0)).total
    2.0
    """

    user: float
    sys: float
    run: float | None = None

    def __sub__(self, other: Cpu) -> Cpu:
        run = None
        if self.run is not None and other.run is not None and self.run >= other.run:
            run = self.run - other.run  # a thread that exited in between would make it shrink
        return Cpu(self.user - other.user, self.sys - other.sys, run)

    def __add__(self, other: Cpu) -> Cpu:
        run = None if self.run is None or other.run is None else self.run + other.run
        return Cpu(self.user + other.user, self.sys + other.sys, run)

    @property
    def ticks(self) -> float:
        """User plus system seconds, to a clock tick.

        >>> Cpu(0.25, 0.5, 0.7).ticks
        0.75
        """
        return self.user + self.sys

    @property
    def resolution(self) -> float:
        """Seconds this difference can be off by: a tick without schedstat, a microsecond with.

        >>> Cpu(0.25, 0.5).resolution == 1 / TICK, Cpu(0.0, 0.0, 0.004).resolution
        (True, 1e-06)
        """
        return 1e-6 if self.run is not None else 1 / TICK

    @property
    def total(self) -> float:
        """CPU seconds: the precise run time when known, else user plus system ticks.

        >>> Cpu(0.25, 0.5).total, Cpu(0.0, 0.0, 0.004).total
        (0.75, 0.004)
        """
        return self.run if self.run is not None else self.user + self.sys


def parse_stat(text: str, tick: int = TICK, *, reaped: bool = False) -> Cpu:
    """utime and stime from the text of ``/proc/PID/stat``; with ``reaped``, children's too.

    ``reaped`` adds cutime and cstime: the CPU of children the process has
    waited for (socat forks one per client).

    >>> line = "42 (a b) S 1 2 3 4 5 6 7 8 9 10 150 25 50 25 20"
    >>> parse_stat(line, tick=100), parse_stat(line, tick=100, reaped=True)
    (Cpu(user=1.5, sys=0.25, run=None), Cpu(user=2.0, sys=0.5, run=None))
    """
    fields = _stat_fields(text)
    # utime, stime, cutime, cstime are fields 14 to 17.
    user, sys = int(fields[11]), int(fields[12])
    if reaped:
        user, sys = user + int(fields[13]), sys + int(fields[14])
    return Cpu(user / tick, sys / tick)


def parse_faults(text: str) -> int:
    """Page faults (minor + major) from the text of ``/proc/PID/stat``.

    An mmap sender reads the file by faulting its pages in, which strace cannot
    see; this count can.

    >>> parse_faults("42 (a b) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20")
    16
    """
    fields = _stat_fields(text)
    return int(fields[7]) + int(fields[9])  # minflt (field 10), majflt (field 12)


def faults_of(pid: int) -> int:
    """Page faults a live process has taken so far.

    >>> faults_of(os.getpid()) > 0
    True
    """
    with open(f"/proc/{pid}/stat") as f:
        return parse_faults(f.read())


def parse_schedstat(text: str) -> float:
    """Run time in seconds from the text of ``/proc/PID/task/TID/schedstat`` (ns first).

    >>> parse_schedstat("1500000000 20000 7")
    1.5
    """
    return int(text.split()[0]) / 1e9


def run_time_of(pid: int) -> float | None:
    """Nanosecond-precise CPU run time of all the live threads of a process.

    None without schedstat (``CONFIG_SCHEDSTATS`` off) or when the process is gone.

    >>> run_time_of(os.getpid()) > 0
    True
    """
    total = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        text = _read(f"/proc/{pid}/task/{tid}/schedstat")
        if text is None:
            if not os.path.exists(f"/proc/{pid}/task"):
                return None
            continue  # the thread ended while we looked
        total += parse_schedstat(text)
    return total


def cpu_of(pid: int, *, reaped: bool = False) -> Cpu:
    """The CPU a live process has used so far, as the kernel accounts it.

    With ``reaped`` the CPU of children it has waited for is in the ticks and
    in ``run`` (their run time is gone with their threads; their ticks stand in).

    >>> cpu_of(os.getpid()).total > 0
    True
    """
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    own = parse_stat(text)
    run = run_time_of(pid)
    if reaped:
        with_children = parse_stat(text, reaped=True)
        if run is not None:
            run += with_children.ticks - own.ticks
        own = with_children
    return Cpu(own.user, own.sys, run)


def tree_cpu_of(root: int) -> Cpu:
    """The CPU of ``root`` and every live process below it (a master and its workers).

    A process that exits while we sum is left out; one that never appears
    cannot be summed: sample trees that keep their processes.

    >>> tree_cpu_of(os.getpid()).total >= cpu_of(os.getpid()).user
    True
    """
    total = Cpu(0.0, 0.0, 0.0)
    for pid in descendants(root):
        try:
            total = total + cpu_of(pid)
        except OSError:
            continue
    return total


# --- CPU of a core -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """One CPU's busy and softirq seconds so far, from ``/proc/stat`` (clock ticks).

    >>> CpuTimes(2.0, 0.5) - CpuTimes(1.0, 0.25)
    CpuTimes(busy=1.0, softirq=0.25)
    """

    busy: float
    softirq: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.busy - other.busy, self.softirq - other.softirq)


def parse_cpu_times(proc_stat: str, cpu: int, tick: int = TICK) -> CpuTimes:
    """Busy (all but idle and iowait) and softirq seconds of CPU ``cpu`` from ``/proc/stat``.

    On loopback the receiver's TCP work runs as softirq on the sender's CPU;
    without ``CONFIG_IRQ_TIME_ACCOUNTING`` the kernel charges it to whatever
    task was running there, i.e. to the server's sys time: softirq says how much.

    >>> parse_cpu_times("cpu0 100 0 50 900 5 0 25 0 0 0\\n", 0, tick=100)
    CpuTimes(busy=1.75, softirq=0.25)
    """
    prefix = f"cpu{cpu} "
    for line in proc_stat.splitlines():
        if line.startswith(prefix):
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            v = [int(x) for x in line.split()[1:9]]
            return CpuTimes((v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / tick, v[6] / tick)
    raise ValueError(f"no cpu{cpu} line in /proc/stat")


def cpu_times_of(cpu: int) -> CpuTimes:
    """Busy and softirq seconds of one CPU so far (see ``parse_cpu_times``).

    >>> cpu_times_of(min(os.sched_getaffinity(0))).busy > 0
    True
    """
    with open("/proc/stat") as f:
        return parse_cpu_times(f.read(), cpu)


# --- the machine -------------------------------------------------------------------------


def cpu_model(cpuinfo: str) -> str:
    """The CPU's model name from the text of ``/proc/cpuinfo``.

    >>> cpu_model("processor : 0\\nmodel name\\t: AMD Ryzen 5 9600X 6-Core Processor\\n")
    'AMD Ryzen 5 9600X 6-Core Processor'
    >>> cpu_model("")
    'unknown CPU'
    """
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
            return value.strip()
    return "unknown CPU"


def usable_cpus() -> int:
    """CPUs this process may run on (what pinning can use).

    >>> usable_cpus() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def meminfo_bytes(meminfo: str, key: str) -> int | None:
    """One ``/proc/meminfo`` figure (``MemTotal``, ``MemAvailable``...) in bytes, from its text.

    >>> text = "MemTotal:       2048 kB\\nMemAvailable:     64 kB\\n"
    >>> meminfo_bytes(text, "MemTotal"), meminfo_bytes(text, "MemAvailable")
    (2097152, 65536)
    >>> meminfo_bytes(text, "SwapTotal") is None
    True
    """
    m = re.search(rf"^{re.escape(key)}:\s+(\d+) kB", meminfo, re.M)
    return int(m[1]) * 1024 if m else None


def os_name(os_release: str) -> str:
    """The distribution's ``PRETTY_NAME`` from the text of ``/etc/os-release``.

    >>> os_name('NAME="Debian"\\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\\n')
    'Debian GNU/Linux 12 (bookworm)'
    """
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)', os_release, re.M)
    return m[1] if m else "unknown OS"


def facts() -> dict[str, object]:
    """What a measurement ran on: CPU, CPU counts, memory, kernel, OS, Python.

    >>> sorted(facts())[:4]
    ['clock_ticks_per_s', 'cpu', 'cpus', 'hypervisor']
    """
    cpuinfo = _read("/proc/cpuinfo") or ""
    mem = meminfo_bytes(_read("/proc/meminfo") or "", "MemTotal")
    return {
        "cpu": cpu_model(cpuinfo) if cpuinfo else platform.processor() or "unknown CPU",
        "cpus": usable_cpus(),
        "online_cpus": os.cpu_count(),
        "hypervisor": " hypervisor" in cpuinfo,
        "mem_gib": round(mem / (1 << 30), 1) if mem else None,
        "system": platform.system(),
        "kernel": platform.release(),
        "os": os_name(_read("/etc/os-release") or ""),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "clock_ticks_per_s": TICK,
    }


# --- numbers and ports ---------------------------------------------------------------------


def median(values: Sequence[float | None]) -> float | None:
    """The median of the values that exist (``None`` when none do).

    >>> median([3.0, 1.0, 2.0]), median([None, 4.0]), median([])
    (2.0, 4.0, None)
    """
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def spread(values: Sequence[float | None]) -> dict[str, float] | None:
    """Min, max and the range relative to the median, for repeated runs.

    >>> spread([10.0, 12.0, 11.0])
    {'min': 10.0, 'max': 12.0, 'rel': 0.1818}
    >>> spread([None]) is None
    True
    """
    present = [v for v in values if v is not None]
    if not present:
        return None
    mid = statistics.median(present)
    lo, hi = min(present), max(present)
    rel = (hi - lo) / mid if mid else 0.0
    return {"min": round(lo, 4), "max": round(hi, 4), "rel": round(rel, 4)}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (a child may bind it next; rarely, someone else).

    >>> 0 < free_port() < 65536
    True
    """
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
