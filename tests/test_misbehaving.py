"""Objects that lie about what they read or wrote get a clear error, never belief.

Issue 9, finding 7: a ``readinto()`` returning a negative count wrote stale
bytes from the pooled buffer (another copy's data) and spun forever; with
``count=None`` the sink grew by a gigabyte a second. Each lie here must end
the copy promptly with ``TypeError``/``ValueError`` carrying ``bytes_copied``
(what the sink really took), and the sink must hold only true bytes.
"""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

import zcopy

pytestmark = [
    pytest.mark.filterwarnings("ignore::zcopy.FastPathWarning"),
    pytest.mark.usefixtures("no_fd_leak"),
]

GOOD = b"good bytes first. "


class LyingReader:
    """Hands out GOOD once, then answers ``readinto`` with ``lie`` (and writes nothing)."""

    def __init__(self, lie: object) -> None:
        self.lie = lie
        self.calls = 0

    def readinto(self, buf: Any) -> object:
        self.calls += 1
        if self.calls == 1:
            buf[: len(GOOD)] = GOOD
            return len(GOOD)
        if self.calls > 1000:  # a copy that keeps believing would spin: stop it here
            raise AssertionError("zcopy kept calling readinto() after a lie")
        return self.lie


class Sink:
    """A sink that keeps what it is given and can answer ``write`` with a lie."""

    def __init__(self, lie: object = "honest", after: int = 0) -> None:
        self.got = bytearray()
        self.lie = lie
        self.after = after  # honest writes before the lie starts

    def write(self, b: Any) -> object:
        if self.lie != "honest" and self.after == 0:
            return self.lie
        self.after -= 1
        self.got += b
        return len(b)


LIES: list[tuple[object, type[Exception], str]] = [
    (-1, ValueError, r"returned -1 with room for \d+ bytes"),
    (-(1 << 40), ValueError, "returned -1099511627776"),
    (1 << 30, ValueError, "a count must be"),
    ("5", TypeError, "returned str, not an int byte count"),
    (5.0, TypeError, "returned float"),
    (True, TypeError, "returned bool"),
]


@pytest.mark.parametrize("count", [None, 10 << 20])
@pytest.mark.parametrize(("lie", "error", "match"), LIES)
def test_readinto_lie_is_refused_with_the_count(
    lie: object, error: type[Exception], match: str, count: int | None
) -> None:
    sink = Sink()
    started = time.monotonic()
    with pytest.raises(error, match=match) as info:
        zcopy.copy(sink, LyingReader(lie), count)
    assert time.monotonic() - started < 2, "refused promptly, not after spinning"
    assert info.value.bytes_copied == len(GOOD)  # type: ignore[attr-defined]
    assert bytes(sink.got) == GOOD, "the sink holds only what was truly read"


def test_readinto_none_without_an_fd_is_blocking_io() -> None:
    with pytest.raises(BlockingIOError, match="no fd zcopy could wait on") as info:
        zcopy.copy(Sink(), LyingReader(None))
    assert info.value.bytes_copied == len(GOOD)  # type: ignore[attr-defined]


def test_a_count_it_never_wrote_sends_no_other_copys_bytes(tmp_path: Path) -> None:
    """A readinto() that says 'n' and writes nothing must not send the pool's last contents."""
    secret = os.urandom(1 << 20)
    path = tmp_path / "secret"
    path.write_bytes(secret)
    out = tmp_path / "out"
    # An O_APPEND sink takes the user-space route: the secret passes through a pooled buffer.
    with open(path, "rb") as f, open(out, "ab") as sink:
        assert zcopy.explain(sink, f).route is zcopy.Route.USERSPACE
        assert zcopy.copy(sink, f) == len(secret)

    class Claims:
        def readinto(self, buf: Any) -> int:
            return len(buf)  # "filled it", having written nothing

    got = io.BytesIO()
    assert zcopy.copy(got, Claims(), 1 << 20) == 1 << 20
    value = got.getvalue()
    assert secret[:64] not in value and secret[-64:] not in value
    assert value == bytes(1 << 20), "a buffer of the copy's own: zeros, never a pooled one"


WRITE_LIES: list[tuple[object, type[Exception], str]] = [
    (-1, ValueError, r"write\(\) returned -1 with given \d+ bytes"),
    ("x", TypeError, r"write\(\) returned str"),
    (3.0, TypeError, "returned float"),
]


@pytest.mark.parametrize(("lie", "error", "match"), WRITE_LIES)
def test_write_lie_is_refused_with_the_count(
    lie: object, error: type[Exception], match: str, tmp_path: Path
) -> None:
    sink = Sink(lie)
    with pytest.raises(error, match=match) as info:
        zcopy.copy(sink, io.BytesIO(b"x" * 1000), 10)
    assert info.value.bytes_copied == 0  # type: ignore[attr-defined]
    # From a file source (user space, in 1 MiB reads): one honest write, then the lie.
    path = tmp_path / "src"
    path.write_bytes(os.urandom(3 << 20))
    sink = Sink(lie, after=1)

    class Reader:  # no fd: the user-space route reads it chunk by chunk
        def __init__(self, f: Any) -> None:
            self.f = f

        def readinto(self, b: Any) -> int:
            return int(self.f.readinto(b))

    with open(path, "rb") as f, pytest.raises(error) as info:
        zcopy.copy(sink, Reader(f))
    assert info.value.bytes_copied == len(sink.got) > 0  # type: ignore[attr-defined]


def test_write_claiming_more_than_given_never_inflates_the_count() -> None:
    class Boaster:
        def __init__(self) -> None:
            self.got = 0

        def write(self, b: Any) -> int:
            self.got += len(b)
            return len(b) * 2

    sink = Boaster()
    with pytest.raises(ValueError, match=r"a count must be 0\.\.1000") as info:
        zcopy.copy(sink, b"y" * 1000)
    assert info.value.bytes_copied == 0  # type: ignore[attr-defined]


def test_write_returning_zero_is_an_error_not_a_spin() -> None:
    with pytest.raises(OSError, match="accepted 0 bytes"):
        zcopy.copy(Sink(0), b"abc")


def test_raw_write_returning_none_would_block() -> None:
    """For a raw file None means 'nothing written, would block'; with no fd that is an error."""

    class Raw(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> None:
            return None

    with pytest.raises(BlockingIOError, match="would block"):
        zcopy.copy(Raw(), b"abc")


def test_write_returning_none_took_it_all() -> None:
    """A file-like write() that returns nothing took everything, as copyfileobj assumes."""

    class Quiet:
        def __init__(self) -> None:
            self.got = b""

        def write(self, b: Any) -> None:
            self.got += bytes(b)

    sink = Quiet()
    assert zcopy.copy(sink, io.BytesIO(b"abc")) == 3
    assert sink.got == b"abc"


def test_read_returning_more_than_asked_is_refused() -> None:
    class Greedy:
        def read(self, n: int = -1) -> bytes:
            return b"z" * (n + 1)

    with pytest.raises(ValueError, match="more than asked"):
        zcopy.copy(io.BytesIO(), Greedy(), 10)


@pytest.mark.parametrize(
    ("lie", "error"), [(None, TypeError), (-3, ValueError), (1 << 20, ValueError)]
)
def test_socket_subclass_send_lie_is_refused(lie: object, error: type[Exception]) -> None:
    """A socket subclass is used through its send(): what it returns is checked too."""

    class Liar(socket.socket):
        def send(self, data: Any, flags: int = 0) -> Any:
            return lie

    a = Liar(socket.AF_UNIX, socket.SOCK_STREAM)
    b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        with pytest.raises(error, match=r"send\(\) returned") as info:
            zcopy.copy(a, b"abc")
        assert info.value.bytes_copied == 0  # type: ignore[attr-defined]
