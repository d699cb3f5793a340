"""Run or attach strace and parse what it prints: the outside witness of which route ran.

Parsing is pure (``parse_lines``) so it is tested on recorded output; running
is a thin wrapper. strace is asked for ``-f -yy -e trace=...`` so every line
carries its pid and every fd its endpoint (``5</tmp/f>``, ``6<TCP:[...]>``),
and for ``-s 0`` so no payload is ever copied into the trace.

The parser copes with what ``-f`` does to a trace: a call split into
``<unfinished ...>`` and ``<... resumed>`` halves by another thread's line,
a resumed half whose start was never seen (strace attached mid-call),
signal (``--- SIG...``) and exit (``+++ ...``) lines, ``= ?`` returns of
calls cut short by an exit, and ``->`` inside socket annotations.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

DATA_SYSCALLS = (
    "sendfile", "sendfile64", "splice", "copy_file_range", "tee", "vmsplice",
    "read", "readv", "pread64", "preadv", "preadv2",
    "write", "writev", "pwrite64", "pwritev", "pwritev2",
    "sendto", "sendmsg", "recvfrom", "recvmsg", "send", "recv",
)

# How long the permission probe may take, then again under load (seconds).
_PROBE_WAITS = (30.0, 120.0)

# Calls that create a process or thread: traced too, so pids can be grouped into processes.
PROCESS_SYSCALLS = ("clone", "clone3", "fork", "vfork")

_LINE = re.compile(r"^(?:\[pid\s+)?(?P<pid>\d+)\]?\s+(?P<rest>.*)$")
_CALL = re.compile(
    r"^(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+|\?)(?:\s+(?P<err>E[A-Z0-9]+))?"
)
_UNFINISHED = re.compile(r"^(?P<name>\w+)\((?P<args>.*?)\s*<unfinished \.\.\.>$")
_RESUMED = re.compile(r"^<\.\.\. (?P<name>\w+) resumed>(?P<args>.*)$")
# One level of nesting: device nodes read ``1</dev/null<char 1:3>>``.
_FD = re.compile(r"(?<![\w\"])(?P<fd>\d+)<(?P<what>(?:->|<[^<>]*>|[^<>])*)>")


@dataclass(slots=True)
class Call:
    """One finished syscall as strace saw it."""

    pid: int
    name: str
    args: str
    ret: int | None
    error: str | None
    fds: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the call returned without an error.

        >>> Call(1, "read", "3</f>, \"\"..., 5", 5, None).ok
        True
        """
        return self.error is None and self.ret is not None and self.ret >= 0


def parse_lines(lines: Iterable[str]) -> list[Call]:
    """Parse ``strace -f -yy`` output, joining ``<unfinished ...>``/``resumed`` halves.

    >>> parse_lines(['12 sendfile(5<TCP:[1]>, 3</tmp/f>, [0] => [65536], 65536) = 65536'])[0].ret
    65536
    """
    calls: list[Call] = []
    pending: dict[tuple[int, str], str] = {}
    for raw in lines:
        line = raw.rstrip("\n")
        m = _LINE.match(line)
        if m:
            pid, rest = int(m["pid"]), m["rest"]
        else:
            pid, rest = 0, line  # strace without -f prints no pid
        if rest.startswith(("---", "+++")):
            continue  # signals and exits
        u = _UNFINISHED.match(rest)
        if u:
            pending[(pid, u["name"])] = u["args"]
            continue
        r = _RESUMED.match(rest)
        if r:
            head = pending.pop((pid, r["name"]), "")
            rest = f"{r['name']}({head}{r['args'].lstrip()}"
        c = _CALL.match(rest)
        if not c:
            continue
        ret = None if c["ret"] == "?" else int(c["ret"])
        args = c["args"]
        fds = [(int(f["fd"]), f["what"]) for f in _FD.finditer(args)]
        calls.append(Call(pid, c["name"], args, ret, c["err"], fds))
    return calls


@functools.cache
def unavailable_reason() -> str | None:
    """Why strace cannot trace here, or None when it can; probed once per process.

    ptrace can be forbidden (a container without CAP_SYS_PTRACE, or
    ``kernel.yama.ptrace_scope``). A probe that outlasts its wait says nothing
    about permission (a loaded machine is slow to start processes): it is tried
    again with a longer wait, and only a refusal or a second timeout counts.

    >>> unavailable_reason() is None or "strace" in unavailable_reason()
    True
    """
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install -y strace)"
    for wait in _PROBE_WAITS:
        try:
            probe = subprocess.run(
                ["strace", "-f", "-qq", "-e", "trace=none", "true"],
                capture_output=True, text=True, timeout=wait,
            )
        except subprocess.TimeoutExpired:
            continue
        except OSError as exc:
            return f"strace cannot be run: {exc}"
        if probe.returncode == 0:
            return None
        said = probe.stderr.strip().splitlines()
        return (
            "strace may not trace here (ptrace forbidden: a container without "
            "CAP_SYS_PTRACE, or kernel.yama.ptrace_scope)"
            + (f": {said[-1]}" if said else f"; it exited {probe.returncode}")
        )
    return f"strace did not finish a trivial trace within {sum(_PROBE_WAITS):.0f} s"


def available() -> bool:
    """Whether strace exists and may trace here (see ``unavailable_reason``).

    >>> available() == (unavailable_reason() is None)
    True
    """
    return unavailable_reason() is None


def command(out_path: str, syscalls: Sequence[str] = DATA_SYSCALLS) -> list[str]:
    """The strace prefix that records ``syscalls`` with fd annotations into ``out_path``.

    >>> command("/tmp/out", ["read"])[-4:]
    ['-e', 'trace=read', '-o', '/tmp/out']
    """
    trace = f"trace={','.join(syscalls)}"
    return ["strace", "-f", "-qq", "-yy", "-s", "0", "-e", trace, "-o", out_path]


def attach_command(
    out_path: str, pids: Iterable[int], syscalls: Sequence[str] = DATA_SYSCALLS
) -> list[str]:
    """The strace command that attaches to ``pids`` (with their threads, and any child they fork).

    >>> attach_command("/tmp/out", [12, 13], ["read"])[-4:]
    ['-p', '12', '-p', '13']
    """
    argv = command(out_path, syscalls)
    for pid in pids:
        argv += ["-p", str(pid)]
    return argv
