"""CPU from the kernel's accounting, and the arithmetic that turns it into the study's figures.

The measured process is sampled from outside (``zcopy.tools._proc.cpu_of``:
ticks from ``/proc/PID/stat``, run time from ``schedstat``) while it is idle
before the first transfer and idle after the last: the difference is the CPU
of the transfers and nothing else. This module is the arithmetic, and pure.
"""

from __future__ import annotations

from dataclasses import dataclass

# The kernel's accounting is read by the tools' one toolkit; these names stay importable
# from here, where the bench's arithmetic uses them.
from zcopy.tools._proc import (
    TICK,
    Cpu,
    CpuTimes,
    cpu_of,
    cpu_times_of,
    faults_of,
    median,
    parse_cpu_times,
    parse_faults,
    parse_schedstat,
    parse_stat,
    run_time_of,
    spread,
)

__all__ = [
    "GIB", "MIB", "TICK", "Cpu", "CpuTimes", "Figures", "cpu_of", "cpu_times_of", "faults_of",
    "figures", "median", "others_share", "parse_cpu_times", "parse_faults", "parse_schedstat",
    "parse_stat", "ratio", "run_time_of", "spread",
]

MIB = 1 << 20
GIB = 1 << 30


def others_share(core: CpuTimes, server: Cpu, window_s: float) -> float | None:
    """How busy the server's core was with other work during a pass, as a share of the pass.

    The core's busy time, less its softirq (the loopback's own TCP work) and
    less the server's ticks. A lower bound: softirq that ran inside a busy
    neighbour is not counted. Good to a few ticks (10 ms each) per pass, so
    on a short pass the ticks can add up to more than the pass: it is capped
    at the whole pass.

    >>> others_share(CpuTimes(busy=1.0, softirq=0.2), Cpu(0.1, 0.3), 2.0)
    0.2
    >>> others_share(CpuTimes(0.5, 0.0), Cpu(0.2, 0.4), 1.0)
    0.0
    >>> others_share(CpuTimes(0.04, 0.0), Cpu(0.0, 0.01), 0.02)  # ticks over a 20 ms pass
    1.0
    """
    if window_s <= 0:
        return None
    others = core.busy - core.softirq - (server.user + server.sys)
    return round(min(1.0, max(0.0, others) / window_s), 4)


@dataclass(frozen=True, slots=True)
class Figures:
    """One pass of one mode, in the study's units (the Go post's)."""

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


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base``, or ``None`` when either is missing or the base is zero.

    >>> ratio(184.0, 54.0) is not None, ratio(1.0, 0.0)
    (True, None)
    """
    if value is None or not base:
        return None
    return value / base
