"""Proof from outside the process (strace): which syscalls actually moved the bytes.

Each snippet runs in its own traced process; the assertions read the kernel's
view of it, with every fd annotated by what it is (``-yy``), not zcopy's counters.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

import pytest
from conftest import DRAINED_TCP, calls_on, run_traced

import zcopy
from zcopy.tools.strace import Call

BIG = 256 << 20

READS = ("read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg")
WRITES = ("write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg")


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    """256 MiB: a sparse file, so the page cache serves it without a disk or a slow fill."""
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.truncate(BIG)
    return path


_FILE_TO_TCP = DRAINED_TCP + """
PATH = {path!r}
{wrapper}
with open(PATH, "rb") as f:
    n = zcopy.copy(a, wrap(f))
a.shutdown(socket.SHUT_WR); t.join()
assert n == got[0] == {expect}, (n, got)
"""

_WRAPPERS = {
    "plain": ("def wrap(f): return f", BIG),
    "section": ("def wrap(f): return zcopy.section(f, 4096, 128 << 20)", 128 << 20),
    "observe": (
        "seen = []\ndef wrap(f): return zcopy.observe(f, seen.append)",
        BIG,
    ),
}


def _sum_ok(calls: list[Call]) -> int:
    return sum(c.ret for c in calls if c.ret and c.ret > 0)


@pytest.mark.parametrize("wrapper", list(_WRAPPERS))
def test_file_to_tcp_is_sendfile_no_reads(big_file: Path, tmp_path: Path, wrapper: str) -> None:
    code, expect = _WRAPPERS[wrapper]
    calls = run_traced(
        _FILE_TO_TCP.format(path=str(big_file), wrapper=code, expect=expect), tmp_path
    )
    sendfiles = calls_on(calls, "sendfile", big_file.name) + calls_on(
        calls, "sendfile64", big_file.name
    )
    assert sendfiles, "no sendfile on the file"
    assert _sum_ok(sendfiles) == expect
    for name in READS:
        assert not calls_on(calls, name, big_file.name), f"{name} of the file in user space"
    # The payload never passed through a write on the sending socket either.
    sender_writes = [c for n in WRITES for c in calls_on(calls, n, "TCP:")]
    assert _sum_ok(sender_writes) < 4096


class JustReader:
    def __init__(self, f: object) -> None:
        self.f = f

    def read(self, n: int = -1) -> bytes:
        return self.f.read(n)  # type: ignore[attr-defined, no-any-return]


def test_read_only_wrapper_falls_back(big_file: Path, tmp_path: Path) -> None:
    code = (
        "class JustReader:\n"
        "    def __init__(self, f): self.f = f\n"
        "    def read(self, n=-1): return self.f.read(n)\n"
        "def wrap(f): return JustReader(f)"
    )
    with open(big_file, "rb") as f:
        a, b = socket.socketpair()
        with a, b:
            plan = zcopy.explain(a, JustReader(f))
    assert plan.route is zcopy.Route.USERSPACE
    assert "JustReader has no fileno()" in str(plan)
    calls = run_traced(
        _FILE_TO_TCP.format(path=str(big_file), wrapper=code, expect=BIG), tmp_path
    )
    assert not calls_on(calls, "sendfile", big_file.name)
    reads = [c for n in READS for c in calls_on(calls, n, big_file.name)]
    assert _sum_ok(reads) == BIG, "the fallback reads every byte of the file in user space"


_RELAY = """
import socket, zcopy
a = socket.create_connection(("127.0.0.1", {feed_port}))
b = socket.create_connection(("127.0.0.1", {drain_port}))
n = zcopy.copy(b, a)
b.shutdown(socket.SHUT_WR)
assert n == {size}, n
"""


def test_tcp_to_tcp_relay_is_splice(tmp_path: Path) -> None:
    block = os.urandom(1 << 20)
    want = hashlib.sha256(block * (BIG >> 20)).hexdigest()
    with socket.create_server(("127.0.0.1", 0)) as feed_srv, socket.create_server(
        ("127.0.0.1", 0)
    ) as drain_srv:
        feed_srv.settimeout(60)
        drain_srv.settimeout(60)
        result: dict[str, object] = {}

        def feed() -> None:
            conn, _ = feed_srv.accept()
            with conn:
                for _ in range(BIG >> 20):
                    conn.sendall(block)

        def drain() -> None:
            conn, _ = drain_srv.accept()
            h = hashlib.sha256()
            n = 0
            with conn:
                while chunk := conn.recv(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
            result["n"], result["sha"] = n, h.hexdigest()

        threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
        for t in threads:
            t.start()
        code = _RELAY.format(
            feed_port=feed_srv.getsockname()[1],
            drain_port=drain_srv.getsockname()[1],
            size=BIG,
        )
        calls = run_traced(code, tmp_path)
        for t in threads:
            t.join(60)
    assert result == {"n": BIG, "sha": want}
    splices = calls_on(calls, "splice", "TCP:")
    into_dst = [c for c in splices if c.fds and "TCP:" in c.fds[-1][1]]
    assert _sum_ok(into_dst) == BIG, "every byte reached the dst socket by splice"
    for name in READS + WRITES:
        payload = calls_on(calls, name, "TCP:")
        assert not payload, f"{name} on a relayed socket: payload went through user space"


_FILE_TO_FILE = """
import zcopy
with open({src!r}, "rb") as f, open({dst!r}, "wb") as d:
    assert zcopy.copy(d, f) == {size}
"""


def test_file_to_file_is_copy_file_range(tmp_path: Path) -> None:
    size = 64 << 20
    src = tmp_path / "src.bin"
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)
    dst = tmp_path / "dst.bin"
    calls = run_traced(_FILE_TO_FILE.format(src=str(src), dst=str(dst), size=size), tmp_path)
    cfr = calls_on(calls, "copy_file_range", "src.bin")
    assert cfr and _sum_ok(cfr) == size
    for name in READS + WRITES:
        assert not calls_on(calls, name, "src.bin"), name
        assert not calls_on(calls, name, "dst.bin"), name
    assert dst.read_bytes() == block * (size >> 20)
