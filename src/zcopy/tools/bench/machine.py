"""Facts about the machine a run measured: what the chart titles and results.json carry.

The facts themselves are gathered by ``zcopy.tools._proc.facts`` (one place for
every tool and benchmark); this module says them as a chart title.
"""

from __future__ import annotations

from zcopy.tools._proc import facts

__all__ = ["facts", "title"]


def title(machine: dict[str, object], size: int) -> str:
    """The line that heads each chart.

    >>> title({"cpu": "X", "cpus": 2, "kernel": "6.6", "python": "CPython 3.11.7"}, 1 << 29)
    'X (2 CPUs), Linux 6.6, CPython 3.11.7, 512 MiB file'
    """
    mib = size / (1 << 20)
    shown = f"{mib:.0f} MiB" if mib >= 1 else f"{size} bytes"
    return (f"{machine['cpu']} ({machine['cpus']} CPUs), Linux {machine['kernel']}, "
            f"{machine['python']}, {shown} file")
