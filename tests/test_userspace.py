"""The user-space route (``_routes/userspace``): its buffers, and sources that only have read().

Buffers are pooled, but the pool is bounded: after many copies that each held
one at once, at most eight stay mapped. A caller's ``buffer_size`` sizes the
reads of an fd source too (counted as syscalls). A read()-only source that
says "no data yet" or hands back text gets a clear error with the count.
"""

from __future__ import annotations

import io
import os
import socket
import threading
from pathlib import Path

import pytest
from conftest import Drain, JustReader, run_in_threads

import zcopy
from zcopy._routes import userspace

pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]

DATA = os.urandom(100_000)


class Passthrough(socket.socket):
    """A socket subclass: written through send(), so the copy takes the user-space route."""


def test_buffer_size_sizes_the_reads_of_an_fd_source(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(DATA)
    with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "ab") as dst:
        assert zcopy.explain(dst, src).route is zcopy.Route.USERSPACE  # O_APPEND sink
        before = zcopy.stats().routes.get("userspace", zcopy.RouteStats())
        assert zcopy.copy(dst, src, buffer_size=4096) == len(DATA)
        after = zcopy.stats().routes["userspace"]
    assert (tmp_path / "dst").read_bytes() == DATA
    chunks = -(-len(DATA) // 4096)  # 25 reads and 25 writes of at most 4 KiB, then the EOF read
    assert after.syscalls - before.syscalls == 2 * chunks + 1


def test_the_buffer_pool_keeps_at_most_eight(tmp_path: Path) -> None:
    """Ten copies each hold a pooled 1 MiB buffer at once; afterwards only eight are kept."""
    payload = os.urandom(2 << 20)  # more than a socket pair holds: every sender blocks
    (tmp_path / "src").write_bytes(payload)
    pairs = [socket.socketpair() for _ in range(10)]
    sinks = [Passthrough(a.family, a.type, fileno=a.detach()) for a, _ in pairs]
    peers = [b for _, b in pairs]
    drains: list[Drain] = []
    try:

        def send(i: int) -> None:
            with open(tmp_path / "src", "rb") as f:
                assert zcopy.copy(sinks[i], f) == len(payload)
            sinks[i].shutdown(socket.SHUT_WR)

        def start_reading_late() -> None:
            # Every copy has taken its buffer and is blocked in send() on a full socket.
            for peer in peers:
                drains.append(Drain(peer))

        threading.Timer(0.5, start_reading_late).start()
        run_in_threads(send, 10, timeout=60)
        assert all(d.result(30) == payload for d in drains)
        assert len(userspace._spare) == 8
    finally:
        for s in (*sinks, *peers):
            s.close()


def test_read_only_source_with_no_data_yet_raises_with_the_count() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.write(w, b"first")
    with open(r, "rb", buffering=0) as raw, open(w, "wb", buffering=0):
        out = io.BytesIO()
        # read() of a non-blocking raw file says None: no data yet, and no fd to wait on.
        with pytest.raises(BlockingIOError, match="no data yet") as caught:
            zcopy.copy(out, JustReader(raw))
        assert caught.value.bytes_copied == 5  # type: ignore[attr-defined]
        assert out.getvalue() == b"first"


def test_read_only_source_that_hands_back_text_is_refused() -> None:
    out = io.BytesIO()
    with pytest.raises(TypeError, match=r"read\(\) returned str, not bytes") as caught:
        zcopy.copy(out, JustReader(io.StringIO("text")))  # type: ignore[arg-type]
    assert caught.value.bytes_copied == 0  # type: ignore[attr-defined]
    assert out.getvalue() == b""
