"""section(), observe() and the __zcopy__ protocol a third-party wrapper implements."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from conftest import Drain, JustReader, tcp_pair

import zcopy
from zcopy import Route
from zcopy.pytest_plugin import Copies

# Every test here must leave no fd behind; fallbacks are expected, not warned about.
pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]

DATA = os.urandom(200_000)



def to_tcp(src: object, count: int | None = None) -> tuple[int, bytes]:
    a, b = tcp_pair()
    with a, b:
        drain = Drain(b)
        n = zcopy.copy(a, src, count)
        a.shutdown(socket.SHUT_WR)
        return n, drain.result(30)


# -- section ---------------------------------------------------------------------------------


def test_section_of_a_file_keeps_sendfile_and_position(
    src_file: Path, zcopy_routes: Callable[[], AbstractContextManager[Copies]]
) -> None:
    with open(src_file, "rb") as f:
        f.seek(123)
        sec = zcopy.section(f, 1000, 5000)
        a, b = tcp_pair()
        with a, b:
            assert zcopy.explain(a, sec).route is Route.SENDFILE
        with zcopy_routes() as copies:  # the route that ran, not only the one planned
            assert to_tcp(sec) == (5000, DATA[1000:6000])
        assert copies.routes == ["sendfile"]
        assert f.tell() == 123
        assert to_tcp(sec) == (5000, DATA[1000:6000]), "a section can be copied again"


def test_nested_sections_compose(src_file: Path) -> None:
    with open(src_file, "rb") as f:
        inner = zcopy.section(f, 100, 1000)
        assert to_tcp(zcopy.section(inner, 50, 100)) == (100, DATA[150:250])
        assert to_tcp(zcopy.section(inner, 900, 500)) == (100, DATA[1000:1100])
        assert to_tcp(zcopy.section(inner, 2000, None)) == (0, b"")
        assert to_tcp(zcopy.section(zcopy.section(inner, 10, None), 5, None)) == (
            985,
            DATA[115:1100],
        )


def test_section_beyond_eof_and_open_ended(src_file: Path) -> None:
    with open(src_file, "rb") as f:
        assert to_tcp(zcopy.section(f, len(DATA) + 10, 5)) == (0, b"")
        assert to_tcp(zcopy.section(f, len(DATA) - 10, 1000)) == (10, DATA[-10:])
        assert to_tcp(zcopy.section(f, 199_000, None)) == (1000, DATA[199_000:])
        assert to_tcp(zcopy.section(f, 0, None), 7) == (7, DATA[:7])


@pytest.mark.parametrize("kind", ["bytes", "bytesio", "raw-fd"])
def test_section_of_buffers_and_fds(kind: str, src_file: Path) -> None:
    fd = -1
    if kind == "bytes":
        target: object = DATA
    elif kind == "bytesio":
        target = io.BytesIO(DATA)
        target.seek(42)
    else:
        fd = os.open(src_file, os.O_RDONLY)
        target = fd
    try:
        assert to_tcp(zcopy.section(target, 10, 20)) == (20, DATA[10:30])
        out = io.BytesIO()
        assert zcopy.copy(out, zcopy.section(target, 199_990, None)) == 10
        assert out.getvalue() == DATA[199_990:]
        if kind == "bytesio":
            assert target.tell() == 42  # type: ignore[attr-defined]
        if kind == "raw-fd":
            assert os.lseek(fd, 0, os.SEEK_CUR) == 0
    finally:
        if fd >= 0:
            os.close(fd)


def test_section_on_a_socket_is_refused() -> None:
    a, b = tcp_pair()
    with a, b:
        with pytest.raises(ValueError, match="seekable file or a buffer"):
            zcopy.copy(io.BytesIO(), zcopy.section(a, 0, 10))
        with pytest.raises(ValueError, match="seekable file or a buffer"):
            zcopy.explain(io.BytesIO(), zcopy.section(a, 0, 10))


@pytest.mark.parametrize(("offset", "length"), [(-1, 5), (0, -5)])
def test_section_bad_arguments(offset: int, length: int) -> None:
    with pytest.raises(ValueError):
        zcopy.section(b"abc", offset, length)
    with pytest.raises(TypeError):
        zcopy.section(b"abc", "1", 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["file", "bytes", "bytesio"])
def test_section_reads_like_a_file(kind: str, src_file: Path) -> None:
    with open(src_file, "rb") as f:
        target: object = {"file": f, "bytes": DATA, "bytesio": io.BytesIO(DATA)}[kind]
        sec = zcopy.section(target, 1000, 3000)
        assert sec.read(10) == DATA[1000:1010]
        buf = bytearray(20)
        assert sec.readinto(buf) == 20
        assert buf == DATA[1010:1030]
        assert sec.read() == DATA[1030:4000]
        assert sec.read() == b""
        assert f.tell() == 0
        tail = zcopy.section(target, len(DATA) - 5, None)
        assert tail.read(100) == DATA[-5:]
        assert tail.read(100) == b""


# -- observe ---------------------------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.total = 0
        self.calls = 0

    def __call__(self, n: int) -> None:
        assert n > 0
        self.total += n
        self.calls += 1


def _route_case(route: str, tmp: Path) -> tuple[object, object, Callable[[], bytes], list[Any]]:
    """(dst, src, finish) for a copy that takes ``route``; finish returns what dst got."""
    path = tmp / "src"
    path.write_bytes(DATA)
    closers: list[Any] = []
    a, b = tcp_pair()
    closers += [a, b]
    drain = Drain(b)

    def finish_tcp() -> bytes:
        a.shutdown(socket.SHUT_WR)
        return drain.result(30)

    if route == "sendfile":
        f = open(path, "rb")  # noqa: SIM115
        closers.append(f)
        return a, f, finish_tcp, closers
    if route == "copy_file_range":
        f = open(path, "rb")  # noqa: SIM115
        out_path = tmp / "dst"
        d = open(out_path, "wb")  # noqa: SIM115
        closers += [f, d]

        def finish_file() -> bytes:
            d.close()
            finish_tcp()
            return out_path.read_bytes()

        return d, f, finish_file, closers
    if route == "splice":
        c, e = tcp_pair()
        closers += [c, e]
        e.sendall(DATA)
        e.shutdown(socket.SHUT_WR)
        return a, c, finish_tcp, closers
    if route == "write":
        return a, DATA, finish_tcp, closers
    if route == "userspace":
        return a, JustReader(DATA), finish_tcp, closers
    raise AssertionError(route)


ROUTES = ["sendfile", "copy_file_range", "splice", "write", "userspace"]


@pytest.mark.parametrize("side", ["src", "dst", "both"])
@pytest.mark.parametrize("route", ROUTES)
def test_observe_counts_every_route(route: str, side: str, tmp_path: Path) -> None:
    dst, src, finish, closers = _route_case(route, tmp_path)
    try:
        on_src, on_dst = Counter(), Counter()
        if side in ("src", "both"):
            src = zcopy.observe(src, on_src)
        if side in ("dst", "both"):
            dst = zcopy.observe(dst, on_dst)
        assert zcopy.explain(dst, src).route.value == route, "observe keeps the route"
        n = zcopy.copy(dst, src)
        assert n == len(DATA)
        assert finish() == DATA
        for counter, wanted in ((on_src, ("src", "both")), (on_dst, ("dst", "both"))):
            assert counter.total == (n if side in wanted else 0)
    finally:
        for c in closers:
            c.close()


def test_observe_and_section_nested(src_file: Path) -> None:
    outer, inner = Counter(), Counter()
    with open(src_file, "rb") as f:
        wrapped = zcopy.observe(zcopy.section(zcopy.observe(f, inner), 10, 5000), outer)
        a, b = tcp_pair()
        with a, b:
            assert zcopy.explain(a, wrapped).route is Route.SENDFILE
        assert to_tcp(wrapped, 3000) == (3000, DATA[10:3010])
        assert outer.total == inner.total == 3000
        assert f.tell() == 0


def test_observe_counts_what_arrived_when_the_copy_fails() -> None:
    seen = Counter()
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.2)  # nobody reads b: the copy times out once the buffers are full
        with pytest.raises(TimeoutError) as info:
            zcopy.copy(zcopy.observe(a, seen), DATA * 40)
    assert seen.total == info.value.bytes_copied > 0  # type: ignore[attr-defined]


def test_observed_plain_io_calls_are_counted() -> None:
    seen = Counter()
    src = zcopy.observe(io.BytesIO(b"abcdef"), seen)
    assert src.read(2) == b"ab"
    buf = bytearray(3)
    assert src.readinto(buf) == 3
    sink = zcopy.observe(io.BytesIO(), seen)
    assert sink.write(b"xyz") == 3
    assert seen.total == 8
    assert sink.getvalue() == b"xyz"  # other attributes reach the target
    with pytest.raises(TypeError):
        zcopy.observe(io.BytesIO(), 5)  # type: ignore[arg-type]



def test_observed_empty_calls_are_not_news() -> None:
    """An EOF read, a zero readinto and an empty write move nothing: the observer never hears."""
    seen = Counter()  # it asserts n > 0 on every call
    src = zcopy.observe(io.BytesIO(b""), seen)
    assert src.read(10) == b""
    assert src.readinto(bytearray(3)) == 0
    assert zcopy.observe(io.BytesIO(), seen).write(b"") == 0
    assert (seen.calls, seen.total) == (0, 0)


def test_wrappers_say_what_they_wrap() -> None:
    sec = zcopy.section(b"0123456789", 2, 3)
    assert repr(sec) == "Section(b'0123456789', offset=2, length=3)"
    assert repr(zcopy.observe(sec, Counter())) == f"Observed({sec!r})"
    assert sec.readable()  # a source, as io's readable() reports it


# -- a third-party wrapper --------------------------------------------------------------------


class MeteredRange:
    """Middleware someone else wrote: a ranged, metered view with its own slow read()."""

    def __init__(self, f: Any, start: int, size: int) -> None:
        self.f, self.start, self.size, self.metered = f, start, size, 0

    def read(self, n: int = -1) -> bytes:
        raise AssertionError("zcopy must not call read(): it has __zcopy__")

    def __zcopy__(self) -> zcopy.Handoff:
        return zcopy.Handoff(self.f, offset=self.start, length=self.size, on_bytes=self._meter)

    def _meter(self, n: int) -> None:
        self.metered += n


@pytest.mark.zero_copy  # the plan says sendfile; this fails the test if the copy fell back
def test_third_party_wrapper_keeps_the_fast_path(src_file: Path) -> None:
    with open(src_file, "rb") as f:
        w = MeteredRange(f, 500, 70_000)
        a, b = tcp_pair()
        with a, b:
            plan = zcopy.explain(a, w)
        assert plan.route is Route.SENDFILE
        assert "via MeteredRange" in str(plan)
        assert to_tcp(w) == (70_000, DATA[500:70_500])
        assert w.metered == 70_000
        assert f.tell() == 0


def test_handoff_without_offset_moves_the_position(src_file: Path) -> None:
    class Plain:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __zcopy__(self) -> zcopy.Handoff:
            return zcopy.Handoff(self.f, length=100)

    with open(src_file, "rb") as f:
        f.seek(7)
        assert to_tcp(Plain(f)) == (100, DATA[7:107])
        assert f.tell() == 107


def test_bad_handoffs() -> None:
    class Wrong:
        def read(self, n: int = -1) -> bytes:
            return b""

        def __zcopy__(self) -> object:
            return io.BytesIO()

    class Loop:
        def read(self, n: int = -1) -> bytes:
            return b""

        def __zcopy__(self) -> zcopy.Handoff:
            return zcopy.Handoff(self)

    with pytest.raises(TypeError, match=r"expected zcopy\.Handoff"):
        zcopy.copy(io.BytesIO(), Wrong())
    with pytest.raises(ValueError, match="nested __zcopy__"):
        zcopy.copy(io.BytesIO(), Loop())
    with pytest.raises(ValueError):
        zcopy.Handoff(b"", offset=-1)
    with pytest.raises(TypeError):
        zcopy.Handoff(b"", length=True)


def test_section_offset_on_a_sink_is_refused(tmp_path: Path) -> None:
    """zcopy writes at the sink's own position: an offset there is refused, not ignored."""
    path = tmp_path / "dst"
    path.write_bytes(b"." * 20)
    with open(path, "r+b") as f:
        with pytest.raises(ValueError, match="sink's own position"):
            zcopy.copy(zcopy.section(f, 10, 3), b"abcdef")
        assert f.tell() == 0
        # A length-only handoff on a sink (below) is a limit, and is honoured.
        assert zcopy.copy(f, b"abcdef", 3) == 3

        class Capped:
            def __zcopy__(self) -> zcopy.Handoff:
                return zcopy.Handoff(f, length=4)

        assert zcopy.copy(Capped(), b"abcdef") == 4
    assert path.read_bytes() == b"abcabcd" + b"." * 13
