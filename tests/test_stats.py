"""zcopy.stats(): per-route counters, fallback reasons, reset, and thread safety."""

from __future__ import annotations

import io
import os
import socket
import sys
import threading
from pathlib import Path

import pytest
from conftest import Drain, JustReader, run_in_threads, tcp_pair

import zcopy
from zcopy import _stats

pytestmark = pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning")

DATA = os.urandom(100_000)


@pytest.fixture(autouse=True)
def _clean(no_fd_leak: None) -> None:
    zcopy.reset_stats()


def test_counters_per_route(tmp_path: Path) -> None:
    path = tmp_path / "src"
    path.write_bytes(DATA)
    a, b = tcp_pair()
    with a, b, open(path, "rb") as f, open(tmp_path / "dst", "wb") as d:
        drain = Drain(b)
        assert zcopy.copy(a, f) == len(DATA)  # sendfile
        f.seek(0)
        assert zcopy.copy(d, f, 1000) == 1000  # copy_file_range
        assert zcopy.copy(a, DATA, 500) == 500  # write
        assert zcopy.copy(a, JustReader(DATA)) == len(DATA)  # user space
        c, e = tcp_pair()
        with c, e:
            e.sendall(DATA[:777])
            e.shutdown(socket.SHUT_WR)
            assert zcopy.copy(a, c) == 777  # splice
        a.shutdown(socket.SHUT_WR)
        assert len(drain.result(30)) == 2 * len(DATA) + 500 + 777
    s = zcopy.stats()
    assert {k: (v.calls, v.bytes) for k, v in s.routes.items()} == {
        "sendfile": (1, len(DATA)),
        "copy_file_range": (1, 1000),
        "write": (1, 500),
        "userspace": (1, len(DATA)),
        "splice": (1, 777),
    }
    assert all(v.syscalls >= 1 for v in s.routes.values())
    # One definition of zero-copy (Route.zero_copy): write counts, user space does not.
    assert s.zero_copy_bytes == len(DATA) + 1000 + 500 + 777
    assert s.fallbacks == {"src-opaque": 1}
    assert "JustReader" in s.fallback_examples["src-opaque"]
    d2 = s.as_dict()
    assert d2["fallbacks"] == {"src-opaque": 1}
    assert d2["routes"]["write"] == {"calls": 1, "bytes": 500, "syscalls": 1}  # type: ignore[index]


def test_zero_copy_agrees_with_explain() -> None:
    """explain() and stats() read one definition: what one calls zero-copy, the other counts."""
    for dst, src in ((io.BytesIO(), b"abc"), (io.BytesIO(), JustReader(b"abc"))):
        plan = zcopy.explain(dst, src)
        zcopy.reset_stats()
        zcopy.copy(dst, src)
        assert (zcopy.stats().zero_copy_bytes == 3) is plan.zero_copy


def test_fallback_reasons_counted() -> None:
    for _ in range(3):
        zcopy.copy(io.BytesIO(), JustReader(b"abc"))
    r, w = os.pipe()
    try:
        drain = Drain(r)
        with open("/proc/self/status", "rb") as f:
            zcopy.copy(w, f)  # sendfile refused at the first call
        os.close(w)
        assert drain.result(30).startswith(b"Name:")
    finally:
        os.close(r)
    s = zcopy.stats()
    assert s.fallbacks["src-opaque"] == 3
    assert s.fallbacks["sendfile-refused"] == 1
    assert s.routes["userspace"].calls == 4


def test_reset() -> None:
    zcopy.copy(io.BytesIO(), JustReader(b"abc"))
    assert zcopy.stats().routes
    zcopy.reset_stats()
    s = zcopy.stats()
    assert s.routes == {} and s.fallbacks == {} and s.fallback_examples == {}


def test_failed_copy_still_counts_its_bytes() -> None:
    a, b = tcp_pair()
    with a, b:
        a.settimeout(0.2)  # nobody reads b
        with pytest.raises(TimeoutError) as info:
            zcopy.copy(a, os.urandom(1 << 20) * 32)
    copied = info.value.bytes_copied  # type: ignore[attr-defined]
    assert copied > 0
    assert zcopy.stats().routes["write"].bytes == copied


def test_thread_safety() -> None:
    threads, rounds = 8, 25
    start = threading.Barrier(threads)

    def work(i: int) -> None:
        start.wait(10)
        for _ in range(rounds):
            zcopy.copy(io.BytesIO(), DATA[: 1000 + i])
            zcopy.copy(io.BytesIO(), JustReader(DATA[:10]))
            x, y = socket.socketpair()
            with x, y:
                y.sendall(DATA[:100])
                y.shutdown(socket.SHUT_WR)
                zcopy.copy(io.BytesIO(), x)

    run_in_threads(work, threads)
    s = zcopy.stats()
    assert s.routes["write"].calls == threads * rounds
    assert s.routes["write"].bytes == rounds * sum(1000 + i for i in range(threads))
    assert s.routes["userspace"].calls == 2 * threads * rounds
    assert s.routes["userspace"].bytes == threads * rounds * 110
    assert s.fallbacks == {"src-opaque": threads * rounds, "dst-opaque": threads * rounds}


def test_direct_copies_are_counted_exactly_without_a_lock() -> None:
    """The direct path logs each copy with one append, folded when stats() reads: none lost,
    none counted twice, with readers folding while writers append, and the log bounded."""
    threads, rounds = 4, 3 * _stats.FOLD_AT + 7
    stop = threading.Event()
    seen: list[int] = []

    def read_while_copying() -> None:
        while not stop.is_set():
            route = zcopy.stats().routes.get("write")
            seen.append(route.calls if route else 0)

    def work(i: int) -> None:
        for _ in range(rounds):
            zcopy.copy(io.BytesIO(), DATA[: 1 + i])

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads swap as often as they can: folds meet appends
    reader = threading.Thread(target=read_while_copying)
    reader.start()
    try:
        run_in_threads(work, threads)
    finally:
        stop.set()
        reader.join(30)
        sys.setswitchinterval(switch)
    assert all(len(log) < _stats.FOLD_AT for log in _stats.one_call.values())
    route = zcopy.stats().routes["write"]
    assert (route.calls, route.syscalls) == (threads * rounds, threads * rounds)
    assert route.bytes == rounds * sum(1 + i for i in range(threads))
    assert seen == sorted(seen) and len(seen) > 1  # totals only ever grow


@pytest.mark.parametrize(
    ("then", "counted"),
    [
        ("never logged", 1),  # the raise came before the append: abort() records it
        ("in the log", 1),  # logged, not folded yet: the fold counts it, abort() must not
        ("folded", 1),  # logged, then folded by another thread before abort() looked
        ("reset", 0),  # logged, then reset away: nothing counts it any more
    ],
)
def test_a_copy_cut_off_around_its_logging_is_counted_once(then: str, counted: int) -> None:
    """``record_unless_logged`` (abort()'s stats) against each state a logged copy can be
    in when a signal handler's raise reaches abort()."""
    copy = [700]
    if then != "never logged":
        _stats.one_call["sendfile"].append(copy)
    if then == "folded":
        _stats.fold()
    elif then == "reset":
        zcopy.reset_stats()
    _stats.record_unless_logged("sendfile", copy)
    route = zcopy.stats().routes.get("sendfile")
    got = (route.calls, route.bytes, route.syscalls) if route else (0, 0, 0)
    assert got == (counted, 700 * counted, counted)
