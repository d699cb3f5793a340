"""The served file: generated (random bytes, never compressible or deduplicated) or given.

The file's CRC-32 is computed on the way, for the client's check, and the
page cache is warmed so every mode reads memory, not disk, as in the Go post's runs.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from zcopy.tools._proc import meminfo_bytes

_CHUNK = 4 << 20
# Room left beside the file for strace output and the children's stderr.
_MARGIN = 64 << 20


class DataError(Exception):
    """The file cannot be made or read; the message says what to do."""


def free_bytes(directory: str | Path) -> int:
    """Bytes an unprivileged writer may still use in ``directory``'s filesystem."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def check_space(directory: str | Path, size: int) -> None:
    """Refuse, before writing anything, when ``size`` bytes will not fit."""
    free = free_bytes(directory)
    if free < size + _MARGIN:
        raise DataError(
            f"not enough space in {directory} for a {size >> 20} MiB file "
            f"({free >> 20} MiB free): set TMPDIR to a roomier place, use a smaller --size, "
            "or serve an existing file with --file"
        )


def generate(directory: Path, size: int) -> tuple[Path, int]:
    """Write ``size`` random bytes to ``directory/big.bin``; return its path and CRC-32."""
    check_space(directory, size)
    path = directory / "big.bin"
    crc = 0
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(_CHUNK, left))
            crc = zlib.crc32(block, crc)
            f.write(block)
            left -= len(block)
        f.flush()
        # Written back now, so no writeback of our own file runs during the measurements.
        os.fsync(f.fileno())
    return path, crc


def examine(path: str | Path) -> tuple[Path, int, int]:
    """An existing file's path, size and CRC-32 (reading it also warms the page cache)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"--file {path}: not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise DataError(f"--file {path}: the file is empty")
    try:
        return p.resolve(), size, crc_of(p)
    except OSError as exc:
        raise DataError(f"--file {path}: {exc.strerror}") from None


def crc_of(path: Path) -> int:
    """CRC-32 of a file, read through one reused buffer.

    >>> import tempfile, zlib
    >>> with tempfile.NamedTemporaryFile() as t:
    ...     _ = t.write(b"abc"); t.flush()
    ...     crc_of(Path(t.name)) == zlib.crc32(b"abc")
    True
    """
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    crc = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            crc = zlib.crc32(view[:n], crc)
    return crc


def fits_in_memory(size: int) -> bool:
    """Whether a file of ``size`` bytes can stay in the page cache with room to spare."""
    try:
        with open("/proc/meminfo") as f:
            avail = meminfo_bytes(f.read(), "MemAvailable")
    except OSError:
        return True
    return avail is None or size < avail * 0.8


def warm(path: Path) -> None:
    """Pull the whole file into the page cache."""
    crc_of(path)
