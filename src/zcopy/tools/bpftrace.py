"""The eBPF backend: bpftrace on the ``syscalls:sys_enter_*/sys_exit_*`` tracepoints.

The kernel does the counting: per (syscall, source kind, sink kind) calls and
bytes add up in BPF maps, and nothing crosses to user space until the end, so
attaching to a busy process costs little. The price is detail: an fd is
classified by its inode type (regular file, socket, pipe, device), not named,
so reads and writes are paired by totals rather than call by call.

Script generation (``script``) and output parsing (``parse_output``) are pure;
``record`` runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence

from . import _proc, strace
from .flows import MEMORY, READS, Event, canonical

# Inode type (i_mode >> 12) -> endpoint kind. 99 marks user memory.
KINDS = {8: "file", 12: "socket", 1: "pipe", 2: "device", 6: "device", 4: "file", 0: "unknown"}
_MEMORY_CODE = 99
TRACEFS = "/sys/kernel/tracing"
READY = "ZCOPY-READY"

# syscall -> (fd field of the source or None for memory, fd field of the sink or None)
FIELDS: dict[str, tuple[str | None, str | None]] = {
    "sendfile64": ("in_fd", "out_fd"),
    "splice": ("fd_in", "fd_out"),
    "copy_file_range": ("fd_in", "fd_out"),
    "tee": ("fdin", "fdout"),
    "read": ("fd", None),
    "readv": ("fd", None),
    "pread64": ("fd", None),
    "preadv": ("fd", None),
    "preadv2": ("fd", None),
    "recvfrom": ("fd", None),
    "recvmsg": ("fd", None),
    "write": (None, "fd"),
    "writev": (None, "fd"),
    "pwrite64": (None, "fd"),
    "pwritev": (None, "fd"),
    "pwritev2": (None, "fd"),
    "sendto": (None, "fd"),
    "sendmsg": (None, "fd"),
    "vmsplice": (None, "fd"),
}

NOTE = (
    "eBPF backend: fds are classified by inode type only, and reads are paired with "
    "writes by totals, not call by call, so the flows between kinds are estimates"
)

_MAP_LINE = re.compile(r"^@(?P<map>\w+)\[(?P<keys>[^\]]*)\]:\s*(?P<value>-?\d+)\s*$")


class Unavailable(RuntimeError):
    """bpftrace cannot run here; the message says why and what to do."""


def _kind_expr(field: str | None) -> str:
    if field is None:
        return str(_MEMORY_CODE)
    return f"(uint64)((*(curtask->files->fdt->fd + args->{field}))->f_inode->i_mode >> 12)"


def script(pids: Iterable[int], syscalls: Sequence[str] = tuple(FIELDS)) -> str:
    """The bpftrace program that counts data syscalls of ``pids`` and the processes they fork.

    Processes are matched by tgid (bpftrace's ``pid``), so every thread counts.

    >>> s = script([42], ["read"])
    >>> "@track[42] = 1;" in s and "sys_exit_read" in s
    True
    """
    begin = " ".join(f"@track[{int(p)}] = 1;" for p in pids)
    parts = [
        f'BEGIN {{ {begin} printf("{READY}\\n"); }}',
        "tracepoint:sched:sched_process_fork /@track[pid]/ { @track[args->child_pid] = 1; }",
    ]
    for name in syscalls:
        src, dst = FIELDS[name]
        parts.append(
            f"tracepoint:syscalls:sys_enter_{name} /@track[pid]/ {{ "
            f"@s[tid] = {_kind_expr(src)}; @d[tid] = {_kind_expr(dst)}; }}"
        )
        parts.append(
            f"tracepoint:syscalls:sys_exit_{name} /@track[pid]/ {{ $r = args->ret; "
            f'if ($r >= 0) {{ @c["{name}", @s[tid], @d[tid]] = count(); '
            f'@b["{name}", @s[tid], @d[tid]] = sum($r); }} '
            f'else {{ if ($r == -11) {{ @a["{name}"] = count(); }} '
            f'else {{ @e["{name}"] = count(); }} }} '
            f"delete(@s[tid]); delete(@d[tid]); }}"
        )
    parts.append("END { clear(@track); clear(@s); clear(@d); }")
    return "\n".join(parts) + "\n"


def _kind(code: str) -> str:
    n = int(code)
    return MEMORY if n == _MEMORY_CODE else KINDS.get(n, "unknown")


def parse_output(lines: Iterable[str]) -> list[Event]:
    """Events (one per syscall and kind pair) from the maps bpftrace prints at exit.

    >>> evs = parse_output(["@c[sendfile64, 8, 12]: 3", "@b[sendfile64, 8, 12]: 300",
    ...                     "@a[sendfile64]: 2"])
    >>> [(e.syscall, e.src_kind, e.dst_kind, e.calls, e.nbytes, e.eagain) for e in evs]
    [('sendfile', 'file', 'socket', 3, 300, 0), ('sendfile', 'memory', 'memory', 2, 0, 2)]
    """
    counts: dict[tuple[str, str, str], int] = {}
    sums: dict[tuple[str, str, str], int] = {}
    fails: dict[tuple[str, str], int] = {}
    for line in lines:
        m = _MAP_LINE.match(line.strip())
        if not m:
            continue
        keys = tuple(k.strip() for k in m["keys"].split(","))
        value = int(m["value"])
        if m["map"] in ("c", "b") and len(keys) == 3:
            (counts if m["map"] == "c" else sums)[(keys[0], keys[1], keys[2])] = value
        elif m["map"] in ("a", "e") and len(keys) == 1:
            fails[(m["map"], keys[0])] = value
    events = []
    for (name, s, d), calls in counts.items():
        events.append(
            Event(0, canonical(name), None, None, _kind(s), _kind(d), sums.get((name, s, d), 0),
                  calls)
        )
    for (which, name), n in fails.items():
        events.append(
            Event(0, canonical(name), None, None, MEMORY, MEMORY, 0, n,
                  errors=n if which == "e" else 0, eagain=n if which == "a" else 0)
        )
    return order(events)


def order(events: list[Event]) -> list[Event]:
    """Totals in the order that lets pairing work: into pipes, then reads, biggest first.

    >>> [e.syscall for e in order([Event(0, "write", None, None, "memory", "socket", 1),
    ...                            Event(0, "read", None, None, "file", "memory", 1)])]
    ['read', 'write']
    """

    def rank(e: Event) -> tuple[int, int]:
        if e.dst_kind == "pipe" and e.src_kind not in (MEMORY, "pipe"):
            return (0, -e.nbytes)
        if e.syscall in READS:
            return (1, -e.nbytes)
        return (2, -e.nbytes)

    return sorted(events, key=rank)


def unavailable_reason() -> str | None:
    """Why bpftrace cannot run here, or None if it can. Mounts tracefs when it must and may.

    For example, as root with bpftrace installed it is None; without bpftrace::

        unavailable_reason()   # 'bpftrace is not installed (Debian/Ubuntu: apt-get ...)'
    """
    if shutil.which("bpftrace") is None:
        return "bpftrace is not installed (Debian/Ubuntu: apt-get install -y bpftrace)"
    if os.geteuid() != 0:
        return "bpftrace needs root (or CAP_BPF and CAP_PERFMON); run zcopy trace with sudo"
    if os.path.isdir(f"{TRACEFS}/events/syscalls") or os.path.isdir(
        "/sys/kernel/debug/tracing/events/syscalls"
    ):
        return None
    return _mount_tracefs()


def _mount_tracefs() -> str | None:
    import sys

    print(f"zcopy trace: mounting tracefs at {TRACEFS} (bpftrace needs it)", file=sys.stderr)
    try:
        done = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", TRACEFS], capture_output=True, text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"tracefs is not mounted at {TRACEFS} and mounting it failed: {exc}"
    if done.returncode != 0 or not os.path.isdir(f"{TRACEFS}/events/syscalls"):
        why = done.stderr.strip() or "no syscall tracepoints after mounting"
        return (
            f"tracefs is not mounted at {TRACEFS} and mounting it failed ({why}); as root run: "
            f"mount -t tracefs nodev {TRACEFS}"
        )
    return None


def present(syscalls: Iterable[str] = tuple(FIELDS)) -> list[str]:
    """The syscalls of ``syscalls`` that have tracepoints on this kernel.

    >>> isinstance(present(), list)
    True
    """
    base = TRACEFS if os.path.isdir(f"{TRACEFS}/events") else "/sys/kernel/debug/tracing"
    found = []
    for name in syscalls:
        ok = os.path.isdir(f"{base}/events/syscalls/sys_enter_{name}")
        if ok or not os.path.isdir(f"{base}/events/syscalls"):
            found.append(name)
    return found


# --- running it ----------------------------------------------------------------------------


def record(cmd: list[str] | None, pid: int | None, seconds: float | None) -> list[Event]:
    """Run ``cmd`` under bpftrace, or watch ``pid`` and its tree, until it ends or is stopped.

    A command waits at a gate until the probes are in, so its first bytes count too.

    >>> record(None, 2 ** 22 + 1, None)
    Traceback (most recent call last):
    ...
    zcopy.tools._proc.TraceError: no process with pid 4194305
    """
    gate_w: int | None = None
    target: subprocess.Popen[bytes] | None = None
    if cmd is not None:
        _proc.require_command(cmd[0])
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
        _proc.require_process(pid)
        pids = _proc.descendants(pid)
    with tempfile.TemporaryDirectory(prefix="zcopy-trace-") as tmp:
        prog = os.path.join(tmp, "trace.bt")
        with open(prog, "w") as f:
            f.write(script(pids, present()))
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
                if line.strip() == READY:
                    ready.set()
                lines.append(line)
            ready.set()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            if not ready.wait(60) or tracer.poll() is not None:
                raise _proc.TraceError(f"bpftrace failed: {_error(err_path)}")
            if gate_w is not None:
                os.write(gate_w, b"go\n")
                os.close(gate_w)
                gate_w = None
            with _proc.stop_requests() as stop_asked:
                if target is not None:
                    t = target
                    strace.announce(f"running {cmd[0] if cmd else ''} under bpftrace")

                    def stop(step: int) -> None:
                        _proc.kill(t.pid, _proc.signal_for(step))

                    _proc.wait_until(lambda: t.poll() is not None, stop_asked, seconds, stop)
                else:
                    assert pid is not None
                    strace.announce(f"attached to pid {pid} with bpftrace")
                    stopped: list[bool] = []
                    root = pid
                    _proc.wait_until(
                        lambda: bool(stopped) or not _proc.alive(root),
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
    return parse_output(lines)


def _error(err_path: str) -> str:
    with open(err_path, errors="replace") as f:
        text = f.read()
    useful = [ln for ln in text.splitlines() if "RLIMIT_MEMLOCK" not in ln and ln.strip()]
    return "\n".join(useful) or "it exited without output"
