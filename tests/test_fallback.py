"""The fallback chain the job walks (``Plan.routes``), driven by real errno refusals.

The kernel here refuses nothing these pairs need, so a ``Kernel`` table is passed
to the job in place of ``os``: every call goes to the real syscall except the
ones named, which fail with the errno a kernel would give (as Go's tests swap
``poll.TestHookDidSendFile``). The bytes, the pool and the counts are then
checked from outside: what the peer received, FIONREAD, stats().
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Drain, tcp_pair
from pool_util import assert_pool_clean

import zcopy
from zcopy._copy import Job, run
from zcopy._plan import Route

# Every test here must leave no fd behind; fallbacks are expected, not warned about.
pytestmark = [
    pytest.mark.usefixtures("no_fd_leak"),
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
]

DATA = os.urandom(3 << 20)


class Kernel:
    """``os``, except that call number k of a named syscall fails with an errno.

    ``Kernel(splice={2: errno.EINVAL})`` lets the first splice through and
    fails the second; ``calls`` counts every call per name.
    """

    def __init__(self, **fail: dict[int, int]) -> None:
        self.fail = fail
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        real = getattr(os, name)
        plan = self.fail.get(name, {})

        def call(*args: Any, **kwargs: Any) -> Any:
            k = self.calls[name] = self.calls.get(name, 0) + 1
            if k in plan:
                raise OSError(plan[k], os.strerror(plan[k]))
            return real(*args, **kwargs)

        return call


def copy_with(kernel: Kernel, dst: object, src: object, **kw: Any) -> int:
    return run(Job(dst, src, None, kw.pop("require_zero_copy", None), kernel=kernel, **kw))


def feed(sock: socket.socket, data: bytes = DATA) -> threading.Thread:
    def send() -> None:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the copy failed on purpose and the test closed the socket

    t = threading.Thread(target=send, daemon=True)
    t.start()
    return t


# -- splice through the pool -----------------------------------------------------------------


def socket_to_socket(kernel: Kernel) -> bytes:
    """Copy DATA from one TCP connection into another on ``kernel``; return what arrived."""
    src, feeder_end = tcp_pair()
    a, b = tcp_pair()
    with src, feeder_end, a, b:
        feeder = feed(feeder_end)
        drain = Drain(b)
        try:
            assert copy_with(kernel, a, src) == len(DATA)
        finally:
            a.shutdown(socket.SHUT_WR)
            got = drain.result()
            src.close()
            feeder.join(30)
    return got


def test_splice_refused_by_dst_on_first_call_salvages_the_pipe() -> None:
    """src gave bytes into the pipe, then dst refused: they go out by write(), then user space."""
    zcopy.reset_stats()
    # call 1: src -> pipe; call 2: pipe -> dst
    assert socket_to_socket(Kernel(splice={2: errno.EINVAL})) == DATA
    s = zcopy.stats()
    assert s.fallbacks == {"splice-refused": 1}
    assert "to dst" in s.fallback_examples["splice-refused"]
    assert s.routes["userspace"].bytes == len(DATA)
    assert_pool_clean()


def test_splice_refused_mid_copy_raises_with_the_count() -> None:
    """After bytes moved no route changes: the error carries what the peer has."""
    kernel = Kernel(splice={6: errno.EINVAL})  # the third pipe -> dst splice fails
    src, feeder_end = tcp_pair()
    a, b = tcp_pair()
    with src, feeder_end, a, b:
        feeder = feed(feeder_end)
        drain = Drain(b)
        with pytest.raises(OSError) as info:
            copy_with(kernel, a, src)
        a.shutdown(socket.SHUT_WR)
        got = drain.result()
        src.close()
        feeder.join(30)
    assert info.value.errno == errno.EINVAL
    assert info.value.bytes_copied == len(got) > 0  # type: ignore[attr-defined]
    assert got == DATA[: len(got)]
    # The pipe that held the unsent bytes was closed, not pooled: the next copy is clean.
    assert_pool_clean()


def test_splice_refused_by_src_falls_back_with_nothing_taken() -> None:
    zcopy.reset_stats()
    assert socket_to_socket(Kernel(splice={1: errno.EINVAL})) == DATA
    assert "from src" in zcopy.stats().fallback_examples["splice-refused"]


def test_direct_splice_refused_falls_back() -> None:
    kernel = Kernel(splice={1: errno.EOPNOTSUPP})
    r, w = os.pipe()
    a, b = tcp_pair()
    try:
        writer = threading.Thread(target=_write_then_close, args=(w, DATA[:60000]))
        writer.start()
        drain = Drain(b)
        assert copy_with(kernel, a, r) == 60000
        a.shutdown(socket.SHUT_WR)
        assert drain.result() == DATA[:60000]
        writer.join(30)
    finally:
        os.close(r)
        a.close()
        b.close()


def _write_then_close(w: int, data: bytes) -> None:
    with open(w, "wb") as out:
        out.write(data)


# -- the file chain: copy_file_range -> sendfile -> user space -------------------------------


@pytest.mark.parametrize("cfr_errno", [errno.EXDEV, errno.EPERM, errno.ENOSYS, errno.ETXTBSY])
def test_file_to_file_walks_the_whole_chain(src_file: Path, tmp_path: Path, cfr_errno: int) -> None:
    kernel = Kernel(copy_file_range={1: cfr_errno}, sendfile={1: errno.EINVAL})
    dst = tmp_path / "dst.bin"
    zcopy.reset_stats()
    with open(src_file, "rb") as f, open(dst, "wb") as out:
        plan = zcopy.explain(out, f)
        assert plan.routes == (Route.COPY_FILE_RANGE, Route.SENDFILE, Route.USERSPACE)
        assert copy_with(kernel, out, f) == len(DATA)
        assert f.tell() == len(DATA)
    assert dst.read_bytes() == DATA
    s = zcopy.stats()
    assert s.fallbacks == {"copy_file_range-refused": 1, "sendfile-refused": 1}
    assert s.fallback_examples["copy_file_range-refused"].startswith("sendfile: ")
    assert s.fallback_examples["sendfile-refused"].startswith("user space: ")
    assert list(s.routes) == ["userspace"]


def test_file_to_file_stops_at_sendfile(src_file: Path, tmp_path: Path) -> None:
    kernel = Kernel(copy_file_range={1: errno.EXDEV})
    dst = tmp_path / "dst.bin"
    zcopy.reset_stats()
    with open(src_file, "rb") as f, open(dst, "wb") as out:
        assert copy_with(kernel, out, f) == len(DATA)
    assert dst.read_bytes() == DATA
    assert zcopy.stats().routes["sendfile"].bytes == len(DATA)


def test_strict_mode_stops_where_the_chain_leaves_zero_copy(src_file: Path, tmp_path: Path) -> None:
    """copy_file_range -> sendfile is allowed in strict mode; sendfile -> user space is not."""
    kernel = Kernel(copy_file_range={1: errno.EXDEV}, sendfile={1: errno.EINVAL})
    with open(src_file, "rb") as f, open(tmp_path / "dst.bin", "wb") as out:
        with pytest.raises(zcopy.FastPathLost) as info:
            copy_with(kernel, out, f, require_zero_copy=True)
        assert f.tell() == 0
    assert info.value.bytes_copied == 0
    assert "refused sendfile (EINVAL" in info.value.reason
    assert (tmp_path / "dst.bin").stat().st_size == 0


def test_a_failure_that_is_not_a_refusal_propagates(src_file: Path, tmp_path: Path) -> None:
    kernel = Kernel(copy_file_range={1: errno.EIO})
    with (
        open(src_file, "rb") as f,
        open(tmp_path / "dst.bin", "wb") as out,
        pytest.raises(OSError) as info,
    ):
        copy_with(kernel, out, f)
    assert info.value.errno == errno.EIO
    assert kernel.calls == {"copy_file_range": 1}


def test_refusal_after_the_first_call_is_an_error(src_file: Path) -> None:
    """sendfile refused on its second call: bytes moved, so no fallback, and the count is right."""
    kernel = Kernel(sendfile={2: errno.EINVAL})
    a, b = tcp_pair()
    with a, b, open(src_file, "rb") as f:
        drain = Drain(b)
        with pytest.raises(OSError) as info:
            run(Job(a, f, None, None, kernel=kernel))
        a.shutdown(socket.SHUT_WR)
        got = drain.result()
        assert f.tell() == len(got)
    assert info.value.bytes_copied == len(got) > 0  # type: ignore[attr-defined]



# -- the documented chain is the one the code walks --------------------------------------------


def documented_chains() -> dict[str, tuple[Route, ...]]:
    """docs/design.md's chain table: first column -> the routes of its second column."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "design.md").read_text()
    table = text.split("## The fallback chain, as the code walks it", 1)[1].split("\n\n")[2]
    chains = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        chains[cells[0]] = tuple(Route(r.strip(" `")) for r in cells[1].split("→"))
    return chains


def test_design_doc_shows_the_chain_choose_computes(src_file: Path, tmp_path: Path) -> None:
    chains = documented_chains()
    a, b = tcp_pair()
    with a, b, open(src_file, "rb") as f, open(tmp_path / "out", "wb") as out:
        r, w = os.pipe()
        try:
            computed = {
                "buffer → anything": zcopy.explain(a, b"abc").routes,
                "file → file": zcopy.explain(out, f).routes,
                "file → socket, pipe, device": zcopy.explain(a, f).routes,
                "socket/pipe → anything": zcopy.explain(a, r).routes,
                "not Linux, opaque end, `O_APPEND` sink, `relay(splice=False)`":
                    zcopy.relay_plan(a, b, splice=False).routes,
            }
        finally:
            os.close(r)
            os.close(w)
    assert chains == computed
