"""copy_file_range(2): file to file inside the kernel (reflinks on filesystems that can)."""

from __future__ import annotations

import errno
from collections.abc import Generator

from .._errors import NotHandled
from .._plan import Fallback
from .._transfer import BIG, REFUSED, Transfer, Wait, errname

_ALSO_REFUSED = REFUSED | {
    errno.EPERM,  # an immutable or append-only dst, or a swap file (man copy_file_range)
    errno.ETXTBSY,  # dst is an active swap file
}


def pump(t: Transfer) -> Generator[Wait, None, None]:
    src_fd, dst_fd = (t.src.fd,), (t.dst.fd,)  # map()'s one-item argument lists
    copy_file_range = t.kernel.copy_file_range
    box = t.box
    first = t.moved
    assert t.offset is not None
    while t.remaining != 0:
        t.syscalls += 1
        try:
            # Stored from C, as in sendfile.py: a raising signal handler loses nothing.
            box.extend(map(copy_file_range, src_fd, dst_fd, (t.want(BIG),), (t.offset,)))
        except OSError as exc:
            if t.moved == first and exc.errno in _ALSO_REFUSED:
                raise NotHandled(
                    Fallback.COPY_FILE_RANGE_REFUSED,
                    f"the kernel refused copy_file_range ({errname(exc)})",
                ) from exc
            raise
        if t.settle() == 0:
            if t.moved == first:
                # Old kernels and pseudo-files answer a silent 0: let sendfile decide.
                raise NotHandled(
                    Fallback.COPY_FILE_RANGE_ZERO,
                    "copy_file_range moved nothing on its first call",
                )
            return
    return
    yield  # pragma: no cover - makes this a generator; regular files never EAGAIN
