"""copy_file_range(2): file to file inside the kernel (reflinks on filesystems that can)."""

from __future__ import annotations

import os
from collections.abc import Generator

from .._errors import NotHandled
from .._transfer import BIG, REFUSED, Transfer, Wait, errname

_ALSO_REFUSED = REFUSED | {1, 26}  # EPERM (immutable, swap), ETXTBSY


def pump(t: Transfer) -> Generator[Wait, None, None]:
    src_fd, dst_fd = t.src.fd, t.dst.fd
    assert t.offset is not None
    while t.remaining != 0:
        t.syscalls += 1
        try:
            n = os.copy_file_range(src_fd, dst_fd, t.want(BIG), t.offset)
        except OSError as exc:
            if t.moved == 0 and exc.errno in _ALSO_REFUSED:
                raise NotHandled(
                    "copy_file_range-refused",
                    f"the kernel refused copy_file_range ({errname(exc)})",
                ) from exc
            raise
        if n == 0:
            if t.moved == 0:
                # Old kernels and pseudo-files answer a silent 0: let sendfile decide.
                raise NotHandled(
                    "copy_file_range-zero", "copy_file_range moved nothing on its first call"
                )
            return
        t.advance(n)
    return
    yield  # pragma: no cover - makes this a generator; regular files never EAGAIN
