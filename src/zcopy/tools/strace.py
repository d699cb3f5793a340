"""Run or attach strace and parse what it prints: the outside witness of which route ran.

Parsing is pure (``parse_lines``, then ``events_from_strace`` for the
analysis in ``flows.py``) so it is tested on recorded output; running
(``record``) is a thin wrapper. strace is asked for ``-f -yy -e trace=...`` so every line
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
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from . import _proc
from .flows import MEMORY, READS, WRITES, ZERO_COPY, Event, canonical

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


_EXIT = re.compile(r"^\+\+\+ (?:exited with (?P<code>\d+)|killed by (?P<sig>SIG\w+)\b.*) \+\+\+$")


def exit_status(lines: Iterable[str]) -> int | None:
    """The exit status of the traced command (the first process in the trace), as a shell says it.

    128 + N for a command killed by signal N; ``None`` when the trace does not say.

    >>> exit_status(["9 read(3</f>, ..., 5) = 5", "10 +++ exited with 0 +++",
    ...              "9 +++ exited with 3 +++"])
    3
    >>> exit_status(["9 +++ killed by SIGTERM +++"]), exit_status([])
    (143, None)
    """
    root = None
    for line in lines:
        m = _LINE.match(line.rstrip("\n"))
        if m is None:
            continue
        pid = int(m["pid"])
        root = pid if root is None else root
        end = _EXIT.match(m["rest"]) if pid == root else None
        if end is not None:
            if end["code"] is not None:
                return int(end["code"])
            return 128 + int(getattr(signal.Signals, end["sig"], signal.SIGKILL))
    return None


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
    # -q, not -qq: keep the "+++ exited with N +++" lines (the command's status, exit_status()).
    return ["strace", "-f", "-q", "-yy", "-s", "0", "-e", trace, "-o", out_path]


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


# --- from calls to events ------------------------------------------------------------------

_EAGAIN = frozenset({"EAGAIN", "EWOULDBLOCK"})


def kind_of(annotation: str | None) -> str:
    """The endpoint kind behind an strace ``-yy`` fd annotation.

    >>> [kind_of(a) for a in ("/tmp/f", "TCP:[1.2.3.4:5->6.7.8.9:10]", "pipe:[7]", None)]
    ['file', 'socket', 'pipe', 'memory']
    """
    if annotation is None:
        return MEMORY
    if annotation.startswith(("/dev/pts/", "/dev/tty", "/dev/console")):
        return "tty"
    if annotation.startswith("/dev/"):
        return "device"
    if annotation.startswith("/"):
        return "file"
    if annotation.startswith("pipe:"):
        return "pipe"
    head = annotation.split(":", 1)[0]
    if head.startswith(("TCP", "UDP", "UNIX", "NETLINK", "socket", "RAW", "SCTP", "PACKET")):
        return "socket"
    if head == "anon_inode":
        return "other"
    return "unknown"


def _fds(call: Call) -> tuple[str | None, str | None]:
    """(source, sink) annotations of a data call; None is user memory or an unnamed fd."""
    names = [what for _, what in call.fds]
    first = names[0] if names else None
    second = names[1] if len(names) > 1 else None
    name = canonical(call.name)
    if name == "sendfile":  # sendfile(out_fd, in_fd, ...)
        return second, first
    if name in ZERO_COPY:  # splice/copy_file_range/tee(in, ..., out, ...)
        return first, second
    if name in READS:
        return first, None
    return None, first


def tgids_from_calls(
    calls: Iterable[Call], known: Mapping[int, int] | None = None
) -> dict[int, int]:
    """Map every thread id to its process id, from traced clone/fork calls.

    A clone with ``CLONE_THREAD`` makes a thread of the caller's process; any
    other makes a new process. Ids never seen to be born are their own process.

    >>> c = Call(10, "clone3", "{flags=CLONE_VM|CLONE_THREAD}, 88", 11, None)
    >>> tgids_from_calls([c])
    {10: 10, 11: 10}
    """
    tgid: dict[int, int] = dict(known or {})
    for c in calls:
        if c.name not in ("clone", "clone3", "fork", "vfork") or c.ret is None or c.ret <= 0:
            continue
        parent = tgid.setdefault(c.pid, c.pid)
        tgid[c.ret] = parent if "CLONE_THREAD" in c.args else c.ret
    return tgid


def events_from_strace(
    calls: Iterable[Call], known_tgids: Mapping[int, int] | None = None
) -> list[Event]:
    """The data events of a parsed strace trace, grouped by process.

    >>> line = '7 sendfile(5<TCP:[a->b]>, 3</f>, [0] => [4096], 4096) = 4096'
    >>> e = events_from_strace(parse_lines([line]))[0]
    >>> (e.src_kind, e.dst_kind, e.nbytes)
    ('file', 'socket', 4096)
    """
    calls = list(calls)
    tgid = tgids_from_calls(calls, known_tgids)
    events = []
    for c in calls:
        name = canonical(c.name)
        if name not in ZERO_COPY and name not in READS and name not in WRITES:
            continue
        if c.ret is None and c.error is None:
            continue  # cut short by an exit: it returned nothing
        src, dst = _fds(c)
        err = c.error is not None
        events.append(
            Event(
                group=tgid.get(c.pid, c.pid),
                syscall=name,
                src=src,
                dst=dst,
                src_kind=kind_of(src),
                dst_kind=kind_of(dst),
                nbytes=c.ret if c.ret is not None and c.ret > 0 and not err else 0,
                errors=1 if err and c.error not in _EAGAIN else 0,
                eagain=1 if c.error in _EAGAIN else 0,
                thread=c.pid,
            )
        )
    return events


# --- running it ----------------------------------------------------------------------------


def record(
    cmd: list[str] | None, pid: int | None, seconds: float | None, keep: str | None = None
) -> tuple[list[Call], dict[int, int]]:
    """Run ``cmd`` under strace, or attach to ``pid`` and its tree, until it ends or is stopped.

    Returns the calls and, when attaching, the thread -> process map of the
    threads that were already there (their births were not traced). SIGINT or
    SIGTERM to this process, or ``seconds``, stop the trace (see ``wait_until``).
    ``keep`` keeps the raw trace in that file.

    >>> record(None, 2 ** 22 + 1, None)
    Traceback (most recent call last):
    ...
    zcopy.tools._proc.TraceError: no process with pid 4194305
    """
    syscalls = (*DATA_SYSCALLS, *PROCESS_SYSCALLS)
    with tempfile.TemporaryDirectory(prefix="zcopy-trace-") as tmp:
        out = keep or os.path.join(tmp, "strace.out")
        err_path = os.path.join(tmp, "strace.err")
        tgids: dict[int, int] = {}
        with _proc.stop_requests() as stop_asked:
            if cmd is not None:
                _proc.require_command(cmd[0])
                proc = subprocess.Popen([*command(out, syscalls), *cmd])

                def stop(step: int) -> None:
                    _stop_tree(proc.pid, step)

                _proc.wait_until(lambda: proc.poll() is not None, stop_asked, seconds, stop)
            else:
                assert pid is not None
                _proc.require_process(pid)
                pids = _proc.descendants(pid)
                tgids = _proc.threads(pids)
                with open(err_path, "w") as err:
                    proc = subprocess.Popen(
                        attach_command(out, pids, syscalls), stderr=err, start_new_session=True
                    )
                _await_attach(proc, pid, err_path)
                announce(f"attached to pid {pid} with strace")

                def stop(step: int) -> None:
                    _proc.kill(proc.pid, _proc.signal_for(step))  # strace detaches on SIGINT

                _proc.wait_until(lambda: proc.poll() is not None, stop_asked, seconds, stop)
                if proc.returncode not in (0, -signal.SIGINT) and not os.path.getsize(out):
                    raise _proc.TraceError(f"strace failed: {_text(err_path)}")
        with open(out, errors="replace") as f:
            calls = parse_lines(f)
    return calls, tgids


def announce(what: str) -> None:
    """Tell the user on stderr what is being traced, and how to stop it."""
    from ..daemon.log import say  # the one log format of zcopy's long-running commands

    say("zcopy trace", f"{what}; Ctrl-C to stop")


def _text(path: str) -> str:
    with open(path, errors="replace") as f:
        return f.read().strip()


def _stop_tree(tracer: int, step: int) -> None:
    """Stop what ``tracer`` runs: SIGINT to the command, then SIGTERM and SIGKILL to all of it.

    The first, gentle step goes to the command alone so a master process can shut its
    workers down itself; strace, which blocks fatal signals while it runs a command, is
    killed only if its processes will not go.
    """
    tree = _proc.descendants(tracer)[1:]
    if step == 0:
        targets = tree[:1]
    elif step <= 2:
        targets = tree
    else:
        targets = [tracer]
    for pid in targets:
        _proc.kill(pid, _proc.signal_for(step))


def _await_attach(proc: subprocess.Popen[bytes], pid: int, err_path: str) -> None:
    """Wait until strace is the tracer of ``pid``, so nothing after the banner is missed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _proc.TraceError(f"strace could not attach: {_text(err_path)}")
        if not _proc.alive(pid):
            raise _proc.TraceError(f"process {pid} went away")
        if _proc.tracer_of(pid) == proc.pid:
            return
        time.sleep(0.02)
    _proc.kill(proc.pid, signal.SIGKILL)
    raise _proc.TraceError("strace did not attach within 30 s")
