"""Facts about the machine a run measured: what the chart titles and results.json carry."""

from __future__ import annotations

import os
import platform


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
    """CPUs this process may run on (what pinning can use)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def facts() -> dict[str, object]:
    """CPU, CPU count, kernel, Python and OS, for results.json and the chart titles."""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = cpu_model(f.read())
    except OSError:
        cpu = platform.processor() or "unknown CPU"
    return {
        "cpu": cpu,
        "cpus": usable_cpus(),
        "system": platform.system(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "clock_ticks_per_s": os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else None,
    }


def title(machine: dict[str, object], size: int) -> str:
    """The line that heads each chart.

    >>> title({"cpu": "X", "cpus": 2, "kernel": "6.6", "python": "CPython 3.11.7"}, 1 << 29)
    'X (2 CPUs), Linux 6.6, CPython 3.11.7, 512 MiB file'
    """
    mib = size / (1 << 20)
    shown = f"{mib:.0f} MiB" if mib >= 1 else f"{size} bytes"
    return (f"{machine['cpu']} ({machine['cpus']} CPUs), Linux {machine['kernel']}, "
            f"{machine['python']}, {shown} file")
