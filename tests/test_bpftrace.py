"""The eBPF backend's script and output parsing (pure); the live run is in test_trace.py."""

from __future__ import annotations

from zcopy.tools import bpftrace
from zcopy.tools.flows import analyse
from zcopy.tools.report import telltale


def test_script_tracks_processes_and_children() -> None:
    s = bpftrace.script([10, 11], ["sendfile64", "read"])
    assert "@track[10] = 1; @track[11] = 1;" in s
    assert "sched_process_fork /@track[pid]/" in s, "children are followed by tgid"
    assert "tracepoint:syscalls:sys_enter_sendfile64 /@track[pid]/" in s
    assert "args->in_fd" in s and "args->out_fd" in s
    assert "sys_exit_read" in s and "$r == -11" in s  # EAGAIN counted apart
    assert bpftrace.READY in s


def test_parse_maps_into_a_verdict() -> None:
    out = """\
Attaching 40 probes...
ZCOPY-READY

@a[sendfile64]: 860
@b[read, 8, 99]: 67108864
@b[sendto, 99, 12]: 67108900
@b[recvfrom, 12, 99]: 80
@c[read, 8, 99]: 2048
@c[sendto, 99, 12]: 2050
@c[recvfrom, 12, 99]: 1
@e[write]: 3
"""
    events = bpftrace.parse_output(out.splitlines())
    r = analyse(events, backend="bpftrace")
    assert r.verdict == "user-space"
    assert r.syscalls["sendfile"].eagain == 860
    assert r.syscalls["write"].errors == 3
    big = r.flows[0]
    assert (big.label, big.via, big.bytes) == ("file -> socket", "copy", 64 << 20)
    # 2,048 reads and the 2,050 sends that carried them: one 32 KiB chunk per pair.
    assert telltale(r).startswith("64.0 MiB went file -> socket through 4,098 read/sendto calls "
                                 "of 32.0 KiB: the fast path is off"), telltale(r)


def test_kinds_from_inode_types() -> None:
    [e] = bpftrace.parse_output(["@c[splice, 1, 12]: 2", "@b[splice, 1, 12]: 10"])
    assert (e.src_kind, e.dst_kind, e.calls, e.nbytes) == ("pipe", "socket", 2, 10)
