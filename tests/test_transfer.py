"""Delivery accounting (``_transfer``): a sink fd that accepts nothing is an error, never a spin.

``Job(kernel=...)`` is the route boundary's seam (see tests/test_fallback.py):
every call goes to the real syscall except ``write``, which here reports 0
bytes taken, as a broken driver or a seccomp filter could. The copy must stop
with EIO and the true count, not loop forever on a sink that takes nothing.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from zcopy._copy import Job, run

pytestmark = pytest.mark.usefixtures("no_fd_leak")


class WritesTakeNothing:
    """``os``, except that write() reports 0 bytes taken (and writes nothing)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: bytes) -> int:
        return 0


def test_a_sink_fd_that_accepts_nothing_raises_eio_with_the_count(tmp_path: Path) -> None:
    path = tmp_path / "sink"
    with open(path, "wb", buffering=0) as sink:
        job = Job(sink.fileno(), b"abc", None, None, kernel=WritesTakeNothing())
        with pytest.raises(OSError, match="accepted 0 bytes") as caught:
            run(job)
        assert caught.value.errno == errno.EIO
        assert caught.value.bytes_copied == 0  # type: ignore[attr-defined]
    assert path.read_bytes() == b""
