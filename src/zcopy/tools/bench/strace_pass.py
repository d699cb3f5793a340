"""The syscall witness: strace attached to the ready server for the transfers only.

Attaching (``strace -p``) rather than launching leaves the server's start-up
(imports, bind) out of the counts, as the Go post's ``strace -c`` over five
transfers did. Lines come with ``-yy`` fd annotations, so a read of the served
file is told apart from a read of a socket or pipe.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from zcopy.tools import strace
from zcopy.tools._proc import tracer_of

from .procs import Child, ChildFailed, Children

READS = ("read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg", "recv")
WRITES = ("write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "send")
SENDFILES = ("sendfile", "sendfile64")
_FILE_READS = ("read", "readv", "pread64", "preadv", "preadv2")


def unavailable_reason() -> str | None:
    """Why no strace pass can run here, or ``None`` when it can.

    >>> (unavailable_reason() is None) == strace.available()
    True
    """
    why = strace.unavailable_reason()
    return None if why is None else f"strace is missing or not permitted here: {why}"


def attach(children: Children, pid: int, out: Path, timeout: float = 30.0) -> Child:
    """Start strace on ``pid`` and return once the kernel says it is traced."""
    tracer = children.start("strace", strace.attach_command(str(out), [pid]), eof_stops=False)
    deadline = time.monotonic() + timeout
    while tracer_of(pid) == 0:
        if tracer.proc.poll() is not None:
            raise ChildFailed(f"strace could not attach to pid {pid}{tracer.status()}"
                              f"{tracer.tail()}")
        if time.monotonic() > deadline:
            raise ChildFailed(f"strace did not attach to pid {pid} within {timeout:.0f}s")
        time.sleep(0.01)
    return tracer


def count(calls: Iterable[strace.Call], file_path: str) -> tuple[dict[str, int], int]:
    """Calls per syscall name, and how many of the reads read the served file.

    >>> calls = strace.parse_lines([
    ...     '9 sendfile(5<TCP:[1]>, 4</d/big.bin>, [0] => [9], 9) = 9',
    ...     '9 read(4</d/big.bin>, "", 9) = 9',
    ...     '9 read(6<TCP:[2]>, "", 9) = 9'])
    >>> count(calls, "/d/big.bin")
    ({'read': 2, 'sendfile': 1}, 1)
    """
    names: Counter[str] = Counter()
    file_reads = 0
    for c in calls:
        names[c.name] += 1
        if c.name in _FILE_READS and c.fds and c.fds[0][1] == file_path:
            file_reads += 1
    return dict(sorted(names.items())), file_reads


def columns(syscalls: dict[str, int] | None) -> dict[str, int | None]:
    """The table's four counts: sendfile, splice, read (incl. recv), write (incl. send).

    >>> columns({"sendfile": 3, "read": 1, "recvfrom": 2, "sendto": 4})
    {'sendfile': 3, 'splice': 0, 'read': 3, 'write': 4}
    >>> columns(None)["read"] is None
    True
    """
    if syscalls is None:
        return {"sendfile": None, "splice": None, "read": None, "write": None}
    return {
        "sendfile": sum(syscalls.get(n, 0) for n in SENDFILES),
        "splice": syscalls.get("splice", 0),
        "read": sum(syscalls.get(n, 0) for n in READS),
        "write": sum(syscalls.get(n, 0) for n in WRITES),
    }


def collect(tracer: Child, out: Path, file_path: str) -> tuple[dict[str, int], int]:
    """Detach strace (SIGTERM makes it let go and flush) and count what it saw."""
    tracer.close()
    text = out.read_text(errors="replace") if out.exists() else ""
    return count(strace.parse_lines(text.splitlines()), os.path.realpath(file_path))
