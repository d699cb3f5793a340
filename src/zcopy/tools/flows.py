"""From data-path syscalls to a verdict: which bytes moved kernel to kernel, which through memory.

Pure: it reads events (one syscall, or an aggregate of identical ones) and
returns a :class:`Report`; the tracers that produce the events live in
``strace.py`` and ``bpftrace.py``, the words in ``report.py``.

What counts as payload (the rule ``docs/trace.md`` documents):

* a **zero-copy** call (sendfile, splice, copy_file_range, tee) moves bytes fd
  to fd inside the kernel. A splice into a pipe that the same process splices
  out again is one hop, counted once, at the far end;
* a **copy** is a read-family call whose bytes the same process then writes to
  another endpoint (paired in order, per process: ``read(file)`` then
  ``sendto(socket)`` is file -> socket through user space);
* bytes **written from memory** (a write nothing was read for: headers, logs,
  generated bodies) and bytes **read into memory** (requests, code, config)
  are shown but are not payload: no zero-copy call could have moved them.

The verdict is the share of payload moved by zero-copy calls: at least
``FAST_SHARE`` is ``fast-path``, at most ``1 - FAST_SHARE`` is ``user-space``,
in between ``mixed``, and under ``min_bytes`` of payload is ``no-data``.
Small control traffic cannot flip a verdict: a header written from memory is
not payload, and a request relayed as a copy weighs its bytes, not its calls.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .strace import Call

ZERO_COPY = frozenset({"sendfile", "splice", "copy_file_range", "tee"})
READS = frozenset(
    {"read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg", "recv"}
)
WRITES = frozenset(
    {"write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "send",
     "vmsplice"}
)
MEMORY = "memory"
FAST_SHARE = 0.9
MIN_BYTES = 1 << 20
# Reads still waiting for their write after this many more reads are taken as consumed:
# a copy loop writes what it read within a few calls.
_PENDING_CAP = 64
_EAGAIN = frozenset({"EAGAIN", "EWOULDBLOCK"})
# Writes this small are wake-ups (an event loop's self-pipe byte, an eventfd's 8), never
# the next chunk of a copy: pairing them would count one call per chunk twice.
_SIGNAL_MAX = 8


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


def canonical(name: str) -> str:
    """One name per syscall whatever the architecture calls it.

    >>> canonical("sendfile64")
    'sendfile'
    """
    return "sendfile" if name == "sendfile64" else name


@dataclass(frozen=True, slots=True)
class Event:
    """One data syscall, or ``calls`` identical ones: bytes from ``src`` to ``dst``.

    ``src``/``dst`` name the endpoint (``"/tmp/f"``, ``"TCP:[...]"``), or are
    None for user memory or when the tracer cannot name it; ``*_kind`` say what
    it is. ``group`` is the process (tgid): reads pair with writes inside it;
    ``thread`` the thread that made the call (0 when the tracer does not say).

    >>> Event(1, "sendfile", "/f", "TCP:[a->b]", "file", "socket", 65536).nbytes
    65536
    """

    group: int
    syscall: str
    src: str | None
    dst: str | None
    src_kind: str
    dst_kind: str
    nbytes: int
    calls: int = 1
    errors: int = 0
    eagain: int = 0
    thread: int = 0


@dataclass(slots=True)
class SyscallRow:
    """Per-syscall totals: calls (errors included), bytes, errors (EAGAIN apart).

    >>> SyscallRow(calls=3, ok=2, bytes=10).average
    5
    """

    calls: int = 0
    ok: int = 0
    bytes: int = 0
    errors: int = 0
    eagain: int = 0

    @property
    def average(self) -> int:
        """Bytes per call that returned without error."""
        return self.bytes // self.ok if self.ok else 0


@dataclass(slots=True)
class Flow:
    """Bytes that went from one endpoint kind to another, and how.

    ``via`` is ``zero-copy``, ``copy`` (read, then written on), ``from-memory``
    (written with nothing read for it) or ``into-memory`` (read and kept).

    >>> Flow("file", "socket", "zero-copy", 10, Counter(sendfile=1)).label
    'file -> socket'
    """

    src: str
    dst: str
    via: str
    bytes: int = 0
    syscalls: Counter[str] = field(default_factory=Counter)

    @property
    def label(self) -> str:
        """``src -> dst`` in words."""
        return f"{self.src} -> {self.dst}"

    @property
    def calls(self) -> int:
        """Syscalls that carried this flow."""
        return sum(self.syscalls.values())

    @property
    def payload(self) -> bool:
        """Whether these bytes count towards the verdict."""
        return self.via in ("zero-copy", "copy")


@dataclass(slots=True)
class Report:
    """What a trace says: per-syscall table, flows, verdict and the telltale in words.

    >>> analyse([]).verdict
    'no-data'
    """

    backend: str
    syscalls: dict[str, SyscallRow]
    flows: list[Flow]
    zero_copy_bytes: int
    copied_bytes: int
    from_memory_bytes: int
    into_memory_bytes: int
    verdict: str
    telltale: str
    min_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def payload_bytes(self) -> int:
        """Bytes that moved fd to fd: zero-copy plus copied."""
        return self.zero_copy_bytes + self.copied_bytes

    @property
    def zero_copy_share(self) -> float | None:
        """Share of payload bytes moved by zero-copy calls (None without payload)."""
        return self.zero_copy_bytes / self.payload_bytes if self.payload_bytes else None

    def as_dict(self) -> dict[str, object]:
        """The ``--json`` object."""
        return {
            "verdict": self.verdict,
            "telltale": self.telltale,
            "backend": self.backend,
            "zero_copy_bytes": self.zero_copy_bytes,
            "copied_bytes": self.copied_bytes,
            "zero_copy_share": self.zero_copy_share,
            "from_memory_bytes": self.from_memory_bytes,
            "into_memory_bytes": self.into_memory_bytes,
            "min_bytes": self.min_bytes,
            "syscalls": {
                name: {
                    "calls": row.calls,
                    "bytes": row.bytes,
                    "errors": row.errors,
                    "eagain": row.eagain,
                    "average": row.average,
                }
                for name, row in sorted(self.syscalls.items())
            },
            "flows": [
                {
                    "src": f.src,
                    "dst": f.dst,
                    "via": f.via,
                    "bytes": f.bytes,
                    "calls": f.calls,
                    "syscalls": dict(f.syscalls),
                }
                for f in self.flows
            ],
            "notes": list(self.notes),
        }


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
    >>> from zcopy.tools.strace import parse_lines
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


@dataclass(slots=True)
class _Pending:
    """Bytes read (or spliced into a pipe) that wait for the call that passes them on."""

    name: str | None
    kind: str
    left: int
    syscall: str
    calls: int
    thread: int = 0
    counted: bool = False
    closed: bool = False  # read to EOF: a whole load


class _Flows:
    """Accumulates flows keyed by (src kind, dst kind, via)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str, str], Flow] = {}

    def add(self, src: str, dst: str, via: str, nbytes: int, syscall: str, calls: int) -> Flow:
        key = (src, dst, via)
        flow = self.by_key.get(key)
        if flow is None:
            flow = self.by_key[key] = Flow(src, dst, via)
        flow.bytes += nbytes
        if calls:
            flow.syscalls[syscall] += calls
        return flow

    def take(self, pending: _Pending, dst: str, via: str, nbytes: int) -> Flow:
        """Move ``nbytes`` of ``pending`` into a flow; its calls are counted once."""
        calls = 0 if pending.counted else pending.calls
        pending.counted = True
        pending.left -= nbytes
        return self.add(pending.kind, dst, via, nbytes, pending.syscall, calls)


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and a == b


def pair(events: Iterable[Event]) -> list[Flow]:
    """Turn events into flows, pairing reads with the writes that pass them on.

    >>> evs = [Event(1, "read", "/f", None, "file", "memory", 4096),
    ...        Event(1, "write", None, "TCP:[a->b]", "memory", "socket", 4096)]
    >>> [(f.label, f.via, f.bytes) for f in pair(evs)]
    [('file -> socket', 'copy', 4096)]
    """
    flows = _Flows()
    reads: dict[int, deque[_Pending]] = {}
    piped: dict[tuple[int, str | None], deque[_Pending]] = {}
    for ev in events:
        if ev.syscall in READS and ev.nbytes == 0 and not (ev.errors or ev.eagain):
            if ev.src is not None:
                _end_of_file(ev.src, reads.setdefault(ev.group, deque()), flows)
            continue
        if ev.nbytes <= 0:
            continue
        if ev.syscall in ZERO_COPY:
            _zero_copy(ev, flows, piped)
        elif ev.syscall in READS:
            queue = reads.setdefault(ev.group, deque())
            _forget_loaded(ev.src, queue, flows)
            queue.append(
                _Pending(ev.src, ev.src_kind, ev.nbytes, ev.syscall, ev.calls, ev.thread)
            )
            if len(queue) > _PENDING_CAP:
                old = queue.popleft()
                flows.take(old, MEMORY, "into-memory", old.left)
        else:
            _write(ev, flows, reads.setdefault(ev.group, deque()))
    for queue in reads.values():
        for p in queue:
            flows.take(p, MEMORY, "into-memory", p.left)
    for (_, pipe_name), queue in piped.items():
        for p in queue:
            flows.take(p, kind_of(pipe_name) if pipe_name else "pipe", "zero-copy", p.left)
    return sorted(flows.by_key.values(), key=lambda f: -f.bytes)


def _end_of_file(name: str, queue: deque[_Pending], flows: _Flows) -> None:
    """A read hit EOF on ``name``: it was loaded whole, maybe to be written on next.

    Reads still pending from before that load are stale (code, libraries) and are
    taken as kept in memory; the load itself waits, closed, for the next write.
    """
    first = next((i for i, p in enumerate(queue) if p.name == name), None)
    if first is None:
        return
    for _ in range(first):
        old = queue.popleft()
        flows.take(old, MEMORY, "into-memory", old.left)
    for p in queue:
        if p.name == name:
            p.closed = True


def _forget_loaded(name: str | None, queue: deque[_Pending], flows: _Flows) -> None:
    """A new read from another endpoint: whole loads nobody wrote on were kept in memory."""
    for p in [p for p in queue if p.closed and p.name != name]:
        queue.remove(p)
        flows.take(p, MEMORY, "into-memory", p.left)


def _zero_copy(
    ev: Event, flows: _Flows, piped: dict[tuple[int, str | None], deque[_Pending]]
) -> None:
    if ev.dst_kind == "pipe" and ev.src_kind != "pipe":
        # Probably one hop of a splice through a pipe: wait for the far end.
        piped.setdefault((ev.group, ev.dst), deque()).append(
            _Pending(ev.src, ev.src_kind, ev.nbytes, ev.syscall, ev.calls)
        )
        return
    left = ev.nbytes
    if ev.src_kind == "pipe":
        queue = piped.get((ev.group, ev.src))
        if queue is None and ev.src is None:  # unnamed pipes (eBPF): any pipe of the process
            queue = next((q for (g, _), q in piped.items() if g == ev.group and q), None)
        counted = False
        while left and queue:
            head = queue[0]
            take = min(left, head.left)
            flow = flows.take(head, ev.dst_kind, "zero-copy", take)
            if not counted:
                flow.syscalls[ev.syscall] += ev.calls
                counted = True
            left -= take
            if head.left == 0:
                queue.popleft()
        if not left:
            return
        flows.add(
            ev.src_kind, ev.dst_kind, "zero-copy", left, ev.syscall, 0 if counted else ev.calls
        )
        return
    flows.add(ev.src_kind, ev.dst_kind, "zero-copy", left, ev.syscall, ev.calls)


def _write(ev: Event, flows: _Flows, queue: deque[_Pending]) -> None:
    left = ev.nbytes
    biggest: tuple[int, Flow] | None = None
    i = 0 if left > _SIGNAL_MAX else len(queue)
    while left and i < len(queue):
        head = queue[i]
        if head.thread != ev.thread and head.kind != "file":
            # Files are read in worker threads for an event loop to send (asyncio's
            # executor, anyio); another thread's socket or pipe reads are its own business.
            i += 1
            continue
        if _same(head.name, ev.dst):
            # Read from the endpoint we now write to: a request and its answer, not a copy.
            del queue[i]
            flows.take(head, MEMORY, "into-memory", head.left)
            continue
        take = min(left, head.left)
        flow = flows.take(head, ev.dst_kind, "copy", take)
        if biggest is None or take > biggest[0]:
            biggest = (take, flow)
        left -= take
        if head.left == 0:
            del queue[i]
    if left:
        flow = flows.add(MEMORY, ev.dst_kind, "from-memory", left, ev.syscall, 0)
        if biggest is None or left > biggest[0]:
            biggest = (left, flow)
    if biggest is not None:
        biggest[1].syscalls[ev.syscall] += ev.calls


def table(events: Iterable[Event]) -> dict[str, SyscallRow]:
    """Calls, bytes, errors and EAGAINs per syscall.

    >>> table([Event(1, "read", "/f", None, "file", "memory", 8)])["read"].bytes
    8
    """
    rows: dict[str, SyscallRow] = {}
    for ev in events:
        row = rows.setdefault(ev.syscall, SyscallRow())
        row.calls += ev.calls
        failed = ev.errors + ev.eagain
        row.ok += max(ev.calls - failed, 0)
        row.bytes += ev.nbytes
        row.errors += ev.errors
        row.eagain += ev.eagain
    return rows


def analyse(
    events: Iterable[Event],
    *,
    backend: str = "strace",
    min_bytes: int = MIN_BYTES,
    notes: Iterable[str] = (),
) -> Report:
    """Table, flows and verdict for a list of events.

    >>> evs = [Event(1, "sendfile", "/f", "TCP:[a->b]", "file", "socket", 2 << 20, calls=32)]
    >>> r = analyse(evs)
    >>> r.verdict, r.telltale
    ('fast-path', '2.0 MiB went file -> socket through 32 sendfile calls of 64.0 KiB: \
the fast path is on (100% of payload bytes by zero-copy calls)')
    """
    events = list(events)
    flows = pair(events)
    zc = sum(f.bytes for f in flows if f.via == "zero-copy")
    copied = sum(f.bytes for f in flows if f.via == "copy")
    report = Report(
        backend=backend,
        syscalls=table(events),
        flows=flows,
        zero_copy_bytes=zc,
        copied_bytes=copied,
        from_memory_bytes=sum(f.bytes for f in flows if f.via == "from-memory"),
        into_memory_bytes=sum(f.bytes for f in flows if f.via == "into-memory"),
        verdict="no-data",
        telltale="",
        min_bytes=min_bytes,
        notes=list(notes),
    )
    report.verdict, report.telltale = verdict(report)
    return report


def size(n: float) -> str:
    """Bytes in binary units, the way people say them.

    >>> size(2.5 * (1 << 30)), size(32768), size(200)
    ('2.5 GiB', '32.0 KiB', '200 B')
    """
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def percent(share: float) -> str:
    """A share as a percentage that never rounds a little into none or all.

    >>> percent(1.0), percent(0.99999), percent(0.5), percent(0.0)
    ('100%', '99.9%', '50.0%', '0%')
    """
    if share >= 1:
        return "100%"
    if share <= 0:
        return "0%"
    return f"{min(max(share, 0.001), 0.999):.1%}"


def calls_in_order(flow: Flow) -> list[tuple[str, int]]:
    """A flow's syscalls with their call counts, reads before writes.

    >>> calls_in_order(Flow("file", "socket", "copy", 8, Counter(sendto=2, read=1)))
    [('read', 1), ('sendto', 2)]
    """
    names = sorted(flow.syscalls, key=lambda n: (n not in READS, n in WRITES, n))
    return [(n, flow.syscalls[n]) for n in names]


def _via(flow: Flow) -> str:
    """``sendfile``, ``read/sendto``: the calls of a flow, reads first."""
    return "/".join(n for n, _ in calls_in_order(flow)) or "?"


def _through(flow: Flow) -> str:
    calls = flow.calls
    if not calls:
        return f"{size(flow.bytes)} went {flow.label}"
    # A read/write pair moves one chunk in two calls: the chunk is what a reader recognises.
    per = flow.bytes / calls * (2 if flow.via == "copy" and len(flow.syscalls) > 1 else 1)
    plural = "call" if calls == 1 else "calls"
    return (
        f"{size(flow.bytes)} went {flow.label} through {calls:,} {_via(flow)} {plural} "
        f"of {size(per)}"
    )


def verdict(report: Report) -> tuple[str, str]:
    """The verdict and its telltale sentence, from a report's byte counts and flows."""
    payload = report.payload_bytes
    share = report.zero_copy_share
    if payload < report.min_bytes or share is None:
        return "no-data", _no_data(report)
    pct = percent(share)
    zc_flows = [f for f in report.flows if f.via == "zero-copy"]
    cp_flows = [f for f in report.flows if f.via == "copy"]
    if share >= FAST_SHARE:
        return "fast-path", (
            f"{_through(zc_flows[0])}: the fast path is on ({pct} of payload bytes by "
            "zero-copy calls)"
        )
    if share <= 1 - FAST_SHARE:
        return "user-space", (
            f"{_through(cp_flows[0])}: the fast path is off ({pct} of payload bytes by "
            "zero-copy calls)"
        )
    return "mixed", (
        f"{pct} of payload bytes moved by zero-copy calls: {_through(zc_flows[0])}, "
        f"but {_through(cp_flows[0])}"
    )


def _no_data(report: Report) -> str:
    payload = report.payload_bytes
    said = (
        f"only {size(payload)} moved from fd to fd (under the {size(report.min_bytes)} floor)"
        if payload
        else "nothing moved from fd to fd"
    )
    extra = []
    if report.from_memory_bytes:
        extra.append(f"{size(report.from_memory_bytes)} was written from memory")
    if report.into_memory_bytes:
        extra.append(f"{size(report.into_memory_bytes)} was read into memory")
    tail = f" ({'; '.join(extra)}: no zero-copy call could move those)" if extra else ""
    return f"{said}{tail}: no fast path to judge"
