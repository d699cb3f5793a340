"""From data-path syscalls to a verdict: which bytes moved kernel to kernel, which through memory.

Pure: it reads events (one syscall, or an aggregate of identical ones) and
returns a :class:`Report` with a :class:`Verdict`; each tracer runs and turns
what it saw into events in its own module (``strace.py``, ``bpftrace.py``),
and every word said about a report (the telltale, the table, the JSON) is in
``report.py``.

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
in between ``mixed``, and under ``min_bytes`` of payload is ``no-data``
(see ``judge``).
Small control traffic cannot flip a verdict: a header written from memory is
not payload, and a request relayed as a copy weighs its bytes, not its calls.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

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
# Writes this small are wake-ups (an event loop's self-pipe byte, an eventfd's 8), never
# the next chunk of a copy: pairing them would count one call per chunk twice.
_SIGNAL_MAX = 8


class Verdict(StrEnum):
    """What a trace says about the fast path (string values: the CLI's ``--expect`` words).

    >>> Verdict("fast-path") is Verdict.FAST_PATH, Verdict.NO_DATA == "no-data"
    (True, True)
    """

    FAST_PATH = "fast-path"  # at least FAST_SHARE of payload bytes by zero-copy calls
    USER_SPACE = "user-space"  # at most 1 - FAST_SHARE of them
    MIXED = "mixed"  # in between
    NO_DATA = "no-data"  # under min_bytes of payload: nothing to judge


class Via(StrEnum):
    """How a flow's bytes went; only ``ZERO_COPY`` and ``COPY`` are payload.

    >>> [v.value for v in Via]
    ['zero-copy', 'copy', 'from-memory', 'into-memory']
    """

    ZERO_COPY = "zero-copy"  # fd to fd inside the kernel
    COPY = "copy"  # read into memory, then written on
    FROM_MEMORY = "from-memory"  # written with nothing read for it
    INTO_MEMORY = "into-memory"  # read and kept


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

    >>> Flow("file", "socket", Via.ZERO_COPY, 10, Counter(sendfile=1)).label
    'file -> socket'
    """

    src: str
    dst: str
    via: Via
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
        return self.via in (Via.ZERO_COPY, Via.COPY)


@dataclass(slots=True)
class Report:
    """What a trace found: per-syscall table, flows, byte counts and the verdict.

    >>> analyse([]).verdict
    <Verdict.NO_DATA: 'no-data'>
    """

    backend: str
    syscalls: dict[str, SyscallRow]
    flows: list[Flow]
    zero_copy_bytes: int
    copied_bytes: int
    from_memory_bytes: int
    into_memory_bytes: int
    verdict: Verdict
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
        self.by_key: dict[tuple[str, str, Via], Flow] = {}

    def add(self, src: str, dst: str, via: Via, nbytes: int, syscall: str, calls: int) -> Flow:
        key = (src, dst, via)
        flow = self.by_key.get(key)
        if flow is None:
            flow = self.by_key[key] = Flow(src, dst, via)
        flow.bytes += nbytes
        if calls:
            flow.syscalls[syscall] += calls
        return flow

    def take(self, pending: _Pending, dst: str, via: Via, nbytes: int) -> Flow:
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
    >>> [(f.label, f.via.value, f.bytes) for f in pair(evs)]
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
                flows.take(old, MEMORY, Via.INTO_MEMORY, old.left)
        else:
            _write(ev, flows, reads.setdefault(ev.group, deque()))
    for queue in reads.values():
        for p in queue:
            flows.take(p, MEMORY, Via.INTO_MEMORY, p.left)
    for queue in piped.values():  # spliced into a pipe and never out: they stay in the pipe
        for p in queue:
            flows.take(p, "pipe", Via.ZERO_COPY, p.left)
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
        flows.take(old, MEMORY, Via.INTO_MEMORY, old.left)
    for p in queue:
        if p.name == name:
            p.closed = True


def _forget_loaded(name: str | None, queue: deque[_Pending], flows: _Flows) -> None:
    """A new read from another endpoint: whole loads nobody wrote on were kept in memory."""
    for p in [p for p in queue if p.closed and p.name != name]:
        queue.remove(p)
        flows.take(p, MEMORY, Via.INTO_MEMORY, p.left)


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
            flow = flows.take(head, ev.dst_kind, Via.ZERO_COPY, take)
            if not counted:
                flow.syscalls[ev.syscall] += ev.calls
                counted = True
            left -= take
            if head.left == 0:
                queue.popleft()
        if not left:
            return
        flows.add(
            ev.src_kind, ev.dst_kind, Via.ZERO_COPY, left, ev.syscall, 0 if counted else ev.calls
        )
        return
    flows.add(ev.src_kind, ev.dst_kind, Via.ZERO_COPY, left, ev.syscall, ev.calls)


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
            flows.take(head, MEMORY, Via.INTO_MEMORY, head.left)
            continue
        take = min(left, head.left)
        flow = flows.take(head, ev.dst_kind, Via.COPY, take)
        if biggest is None or take > biggest[0]:
            biggest = (take, flow)
        left -= take
        if head.left == 0:
            del queue[i]
    if left:
        flow = flows.add(MEMORY, ev.dst_kind, Via.FROM_MEMORY, left, ev.syscall, 0)
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
    >>> r.verdict, r.zero_copy_bytes, r.flows[0].label
    (<Verdict.FAST_PATH: 'fast-path'>, 2097152, 'file -> socket')
    """
    events = list(events)
    flows = pair(events)

    def moved(via: Via) -> int:
        return sum(f.bytes for f in flows if f.via is via)

    zero_copy, copied = moved(Via.ZERO_COPY), moved(Via.COPY)
    return Report(
        backend=backend,
        syscalls=table(events),
        flows=flows,
        zero_copy_bytes=zero_copy,
        copied_bytes=copied,
        from_memory_bytes=moved(Via.FROM_MEMORY),
        into_memory_bytes=moved(Via.INTO_MEMORY),
        verdict=judge(zero_copy, copied, min_bytes),
        min_bytes=min_bytes,
        notes=list(notes),
    )


def judge(zero_copy_bytes: int, copied_bytes: int, min_bytes: int = MIN_BYTES) -> Verdict:
    """The verdict on payload bytes moved by zero-copy calls and by copies.

    >>> [judge(*a).value for a in [(95, 5, 1), (50, 50, 1), (1, 99, 1), (10, 0, 1 << 20)]]
    ['fast-path', 'mixed', 'user-space', 'no-data']
    """
    payload = zero_copy_bytes + copied_bytes
    if payload < min_bytes or payload == 0:
        return Verdict.NO_DATA
    share = zero_copy_bytes / payload
    if share >= FAST_SHARE:
        return Verdict.FAST_PATH
    if share <= 1 - FAST_SHARE:
        return Verdict.USER_SPACE
    return Verdict.MIXED
