"""CPU from the kernel's accounting, and the arithmetic that turns it into the seed's figures.

The measured process is sampled from outside through ``/proc/PID/stat``
(utime and stime of the whole thread group, in clock ticks) while it is idle
before the first transfer and idle after the last: the difference is the CPU
of the transfers and nothing else. The rest of this module is pure.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIB = 1 << 20
GIB = 1 << 30
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class Cpu:
    """User and system CPU seconds (clock ticks), and the run time in nanoseconds' precision.

    ``run`` is the sum of the threads' ``sum_exec_runtime`` from
    ``/proc/PID/task/*/schedstat``: the same CPU time the kernel scales utime
    and stime from, without their 10 ms granularity. ``None`` when unknown.
    """

    user: float
    sys: float
    run: float | None = None

    def __sub__(self, other: Cpu) -> Cpu:
        run = None
        if self.run is not None and other.run is not None and self.run >= other.run:
            run = self.run - other.run  # a thread that exited in between would make it shrink
        return Cpu(self.user - other.user, self.sys - other.sys, run)

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


def parse_stat(text: str, tick: int = TICK) -> Cpu:
    """utime and stime from the text of ``/proc/PID/stat`` (the command may hold spaces).

    >>> parse_stat("42 (a b) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20", tick=100)
    Cpu(user=1.5, sys=0.25, run=None)
    """
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return Cpu(int(fields[11]) / tick, int(fields[12]) / tick)


def parse_faults(text: str) -> int:
    """Page faults (minor + major) from the text of ``/proc/PID/stat``.

    An mmap sender reads the file by faulting its pages in, which strace cannot
    see; this count can.

    >>> parse_faults("42 (a b) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20")
    16
    """
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[7]) + int(fields[9])  # minflt (field 10), majflt (field 12)


def faults_of(pid: int) -> int:
    """Page faults a live process has taken so far."""
    with open(f"/proc/{pid}/stat") as f:
        return parse_faults(f.read())


def parse_schedstat(text: str) -> float:
    """Run time in seconds from the text of ``/proc/PID/task/TID/schedstat`` (ns first).

    >>> parse_schedstat("1500000000 20000 7")
    1.5
    """
    return int(text.split()[0]) / 1e9


def run_time_of(pid: int) -> float | None:
    """Nanosecond-precise CPU run time of all the live threads of a process."""
    total = 0.0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += parse_schedstat(f.read())
            except FileNotFoundError:  # the thread ended while we looked
                continue
    except OSError:  # no schedstat (CONFIG_SCHEDSTATS off) or no such process
        return None
    return total


def cpu_of(pid: int) -> Cpu:
    """The CPU a live process has used so far, as the kernel accounts it."""
    with open(f"/proc/{pid}/stat") as f:
        ticks = parse_stat(f.read())
    return Cpu(ticks.user, ticks.sys, run_time_of(pid))


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """One CPU's busy and softirq seconds so far, from ``/proc/stat`` (clock ticks)."""

    busy: float
    softirq: float

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.busy - other.busy, self.softirq - other.softirq)


def parse_cpu_times(proc_stat: str, cpu: int, tick: int = TICK) -> CpuTimes:
    """Busy (all but idle and iowait) and softirq seconds of CPU ``cpu`` from ``/proc/stat``.

    On loopback the receiver's TCP work runs as softirq on the sender's CPU;
    without ``CONFIG_IRQ_TIME_ACCOUNTING`` the kernel charges it to whatever
    task was running there, i.e. to the server's sys time. This says how much.

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
    """Busy and softirq seconds of one CPU so far (see ``parse_cpu_times``)."""
    with open("/proc/stat") as f:
        return parse_cpu_times(f.read(), cpu)


def others_share(core: CpuTimes, server: Cpu, window_s: float) -> float | None:
    """How busy the server's core was with other work during a pass, as a share of the pass.

    The core's busy time, less its softirq (the loopback's own TCP work) and
    less the server's ticks. A lower bound: softirq that ran inside a busy
    neighbour is not counted. Good to one tick (10 ms) per pass.

    >>> others_share(CpuTimes(busy=1.0, softirq=0.2), Cpu(0.1, 0.3), 2.0)
    0.2
    >>> others_share(CpuTimes(0.5, 0.0), Cpu(0.2, 0.4), 1.0)
    0.0
    """
    if window_s <= 0:
        return None
    others = core.busy - core.softirq - (server.user + server.sys)
    return round(max(0.0, others) / window_s, 4)


@dataclass(frozen=True, slots=True)
class Figures:
    """One pass of one mode, in the seed's units."""

    cpu_user_s: float
    cpu_sys_s: float
    cpu_ms_per_gib: float
    mib_per_cpu_s: float | None
    wall_mib_s: float | None
    bytes: int
    softirq_s: float | None = None  # softirq on the server's CPU during the pass (pinned only)
    page_faults: int | None = None
    # CPU per GiB less that softirq: the sender's own work, which is what a real network shows.
    cpu_ms_per_gib_ex_softirq: float | None = None
    # What each CPU-per-GiB figure can be off by: the instrument's resolution, per GiB moved.
    resolution_ms_per_gib: float | None = None
    ex_softirq_resolution_ms_per_gib: float | None = None
    # Other tasks' CPU on the server's core during the pass, as a share of the pass (pinned only).
    others_share: float | None = None


def figures(cpu: Cpu, moved: int, wall_s: float, softirq_s: float | None = None,
            page_faults: int | None = None, others: float | None = None) -> Figures:
    """CPU per GiB, payload per CPU-second and wall throughput from one pass.

    The resolutions: the CPU difference is good to ``cpu.resolution``; the
    softirq one to a clock tick, so the figure without softirq is good to a
    tick more. Spread over the GiB moved, that is what each figure can be off by.

    >>> f = figures(Cpu(0.1, 0.4), 10 * GIB, 5.0)
    >>> f.cpu_ms_per_gib, f.mib_per_cpu_s, f.wall_mib_s, f.resolution_ms_per_gib
    (50.0, 20480.0, 2048.0, 1.0)
    """
    gib = moved / GIB
    own = own_res = None
    if softirq_s is not None and gib:
        own = max(0.0, cpu.total - softirq_s) * 1000 / gib
        own_res = (cpu.resolution + 1 / TICK) * 1000 / gib
    return Figures(
        cpu_user_s=cpu.user,
        cpu_sys_s=cpu.sys,
        cpu_ms_per_gib=cpu.total * 1000 / gib if gib else 0.0,
        mib_per_cpu_s=(moved / MIB) / cpu.total if cpu.total > 0 else None,
        wall_mib_s=(moved / MIB) / wall_s if wall_s > 0 else None,
        bytes=moved,
        softirq_s=softirq_s,
        page_faults=page_faults,
        cpu_ms_per_gib_ex_softirq=own,
        resolution_ms_per_gib=cpu.resolution * 1000 / gib if gib else None,
        ex_softirq_resolution_ms_per_gib=own_res,
        others_share=others,
    )


def median(values: Sequence[float | None]) -> float | None:
    """The median of the values that exist (``None`` when none do).

    >>> median([3.0, 1.0, 2.0]), median([None, 4.0]), median([])
    (2.0, 4.0, None)
    """
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def spread(values: Sequence[float | None]) -> dict[str, float] | None:
    """Min, max and the range relative to the median, for ``--repeat``.

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


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base``, or ``None`` when either is missing or the base is zero.

    >>> ratio(184.0, 54.0) is not None, ratio(1.0, 0.0)
    (True, None)
    """
    if value is None or not base:
        return None
    return value / base
