"""The analysis: pairing, payload rules and verdicts, on events and recorded strace lines."""

from __future__ import annotations

from zcopy.tools.flows import Event, Verdict, Via, analyse, pair
from zcopy.tools.strace import events_from_strace, kind_of, parse_lines

MiB = 1 << 20
SOCK = "TCP:[127.0.0.1:8000->127.0.0.1:5000]"
SOCK2 = "TCP:[127.0.0.1:9000->127.0.0.1:6000]"


def ev(
    syscall: str, src: str | None, dst: str | None, n: int, group: int = 1, **kw: int
) -> Event:
    return Event(group, syscall, src, dst, kind_of(src), kind_of(dst), n, **kw)


def copy_loop(chunks: int, chunk: int = 32 << 10, group: int = 1) -> list[Event]:
    out = []
    for _ in range(chunks):
        out.append(ev("read", "/srv/big.bin", None, chunk, group))
        out.append(ev("write", None, SOCK, chunk, group))
    return out


def test_user_space_copy_loop() -> None:
    r = analyse(copy_loop(80))
    assert r.verdict is Verdict.USER_SPACE
    assert r.copied_bytes == 80 * (32 << 10) and r.zero_copy_bytes == 0
    [flow] = [f for f in r.flows if f.payload]
    assert (flow.label, flow.via, flow.calls) == ("file -> socket", Via.COPY, 160)


def test_headers_and_request_do_not_flip_fast_path() -> None:
    events = [ev("recvfrom", SOCK, None, 300), ev("sendto", None, SOCK, 200)]
    events += [ev("sendfile", "/srv/big.bin", SOCK, 64 * MiB, calls=1024)]
    r = analyse(events)
    assert r.verdict == "fast-path"
    assert r.zero_copy_share == 1.0, "a request and its answer on one socket are not a copy"
    assert r.from_memory_bytes == 200 and r.into_memory_bytes == 300


def test_mixed_and_thresholds() -> None:
    events = [ev("sendfile", "/f", SOCK, 2 * MiB, calls=2), *copy_loop(64)]  # 2 MiB each way
    assert analyse(events).verdict == "mixed"
    small = [ev("sendfile", "/f", SOCK, 95 * MiB), *copy_loop(160)]  # 5 MiB copied: 95%
    assert analyse(small).verdict == "fast-path"


def test_no_data_floor() -> None:
    r = analyse(copy_loop(4))  # 128 KiB copied
    assert r.verdict is Verdict.NO_DATA and r.payload_bytes == 128 << 10
    assert analyse(copy_loop(4), min_bytes=1).verdict == "user-space"
    assert analyse([ev("write", None, "/dev/pts/0", 5 * MiB)]).verdict == "no-data"


def test_splice_through_a_pipe_counts_once() -> None:
    events = []
    for _ in range(4):
        events.append(ev("splice", SOCK, "pipe:[7]", MiB))
        events.append(ev("splice", "pipe:[7]", SOCK2, MiB))
    r = analyse(events)
    assert r.zero_copy_bytes == 4 * MiB
    assert [(f.label, f.via, f.bytes, f.calls) for f in r.flows] == [
        ("socket -> socket", "zero-copy", 4 * MiB, 8)
    ]
    assert r.syscalls["splice"].calls == 8 and r.syscalls["splice"].bytes == 8 * MiB


def test_copies_pair_within_a_process_only() -> None:
    events = [ev("read", "/f", None, MiB, group=1), ev("write", None, SOCK, MiB, group=2)]
    flows = {(f.label, f.via) for f in pair(events)}
    assert flows == {("file -> memory", "into-memory"), ("memory -> socket", "from-memory")}


def test_partial_writes_and_errors() -> None:
    events = [
        ev("read", "/f", None, MiB),
        ev("sendto", None, SOCK, MiB // 2),
        ev("sendto", None, SOCK, 0, eagain=1),
        ev("sendto", None, SOCK, MiB // 2),
        ev("sendto", None, SOCK, 0, errors=1),
    ]
    r = analyse(events, min_bytes=1)
    row = r.syscalls["sendto"]
    assert (row.calls, row.bytes, row.errors, row.eagain, row.average) == (4, MiB, 1, 1, MiB // 2)
    [flow] = r.flows
    assert (flow.label, flow.via, flow.syscalls["read"], flow.syscalls["sendto"]) == (
        "file -> socket", "copy", 1, 2
    )


def test_threads_of_one_process_pair_by_clone() -> None:
    # A worker thread reads the file, the event-loop thread writes the socket (asyncio style).
    lines = [
        "100 clone3({flags=CLONE_VM|CLONE_THREAD|CLONE_SIGHAND}, 88) = 101",
        "100 clone(child_stack=NULL, flags=SIGCHLD) = 200",
        "101 read(9</srv/big.bin>, \"\"..., 2097152) = 2097152",
        f"100 sendto(7<{SOCK}>, \"\"..., 2097152, 0, NULL, 0) = 2097152",
        "200 read(3</srv/big.bin>, \"\"..., 2097152) = 2097152",
        f"100 sendto(7<{SOCK}>, \"\"..., 2097152, 0, NULL, 0) = 2097152",
    ]
    r = analyse(events_from_strace(parse_lines(lines)))
    by = {(f.label, f.via): f.bytes for f in r.flows}
    assert by == {
        ("file -> socket", "copy"): 2 * MiB,  # thread 101 belongs to process 100
        ("memory -> socket", "from-memory"): 2 * MiB,  # process 200 is someone else
        ("file -> memory", "into-memory"): 2 * MiB,
    }
    assert r.verdict == "user-space"


def test_syscall_table() -> None:
    row = analyse(copy_loop(64), backend="strace").syscalls["read"]
    assert (row.calls, row.bytes, row.errors, row.eagain, row.average) == (
        64, 2 * MiB, 0, 0, 32 << 10
    )


def test_whole_loads_pair_only_with_the_next_write() -> None:
    events = [
        ev("read", "/usr/lib/x.so", None, 832),  # a library header: never written on
        ev("read", "/app/a.pyc", None, 5000), ev("read", "/app/a.pyc", None, 0),
        ev("read", "/app/b.pyc", None, 7000), ev("read", "/app/b.pyc", None, 0),
        ev("recvfrom", SOCK, None, 80),  # a request: the loads before it were code
        ev("sendto", None, SOCK, 200),  # the header: from memory, not from a .pyc
        # data = f.read(); sock.sendall(data): a load that *is* written on
        ev("read", "/srv/big.bin", None, 2 * MiB), ev("read", "/srv/big.bin", None, 0),
        ev("sendto", None, SOCK, 2 * MiB),
    ]
    r = analyse(events)
    by = {(f.label, f.via): f.bytes for f in r.flows}
    assert by == {
        ("file -> socket", "copy"): 2 * MiB,
        ("file -> memory", "into-memory"): 832 + 5000 + 7000,
        ("socket -> memory", "into-memory"): 80,
        ("memory -> socket", "from-memory"): 200,
    }


def test_other_threads_socket_reads_are_not_this_writes_source() -> None:
    # One thread drains a socket, another feeds a different one from memory (a test harness,
    # a chat server): no copy. A file read in a worker thread and sent by the loop thread is.
    events = [
        ev("recvfrom", SOCK2, None, MiB, thread=11),
        ev("sendto", None, SOCK, MiB, thread=12),
        ev("read", "/srv/big.bin", None, MiB, thread=13),
        ev("sendto", None, SOCK, MiB, thread=12),
    ]
    by = {(f.label, f.via): f.bytes for f in pair(events)}
    assert by == {
        ("socket -> memory", "into-memory"): MiB,
        ("memory -> socket", "from-memory"): MiB,
        ("file -> socket", "copy"): MiB,
    }


def test_wake_up_writes_are_not_copies() -> None:
    events = [ev("read", "/srv/big.bin", None, 64 << 10, thread=2),
              ev("sendto", None, "UNIX-STREAM:[1->2]", 1, thread=2),  # wake the loop
              ev("sendto", None, SOCK, 64 << 10, thread=1)]
    by = {(f.label, f.via): (f.bytes, f.calls) for f in pair(events)}
    assert by == {("file -> socket", "copy"): (64 << 10, 2),
                  ("memory -> socket", "from-memory"): (1, 1)}
