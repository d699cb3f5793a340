"""sendfile(2): a regular file to a socket, pipe or device, page cache to kernel buffer."""

from __future__ import annotations

import os
from collections.abc import Generator

from .._errors import NotHandled
from .._transfer import BIG, REFUSED, Transfer, Wait, errname


def pump(t: Transfer) -> Generator[Wait, None, None]:
    src_fd, dst_fd = t.src.fd, t.dst.fd
    assert t.offset is not None  # file sources always carry an explicit offset
    while t.remaining != 0:
        t.syscalls += 1
        try:
            # An explicit offset: the shared file position is never trusted or moved.
            n = os.sendfile(dst_fd, src_fd, t.offset, t.want(BIG))
        except BlockingIOError:
            yield t.wait_dst()
            continue
        except OSError as exc:
            if t.moved == 0 and exc.errno in REFUSED:
                raise NotHandled(
                    "sendfile-refused", f"the kernel refused sendfile ({errname(exc)})"
                ) from exc
            raise
        if n == 0:
            if t.moved == 0 and t.src.size == 0:
                # Files in /proc and /sys report size 0 yet have content; an
                # honest empty file is confirmed by one read in user space.
                raise NotHandled(
                    "sendfile-zero-size",
                    f"src {t.src.label} reports size 0 and sendfile moved nothing "
                    "(a /proc or /sys file?)",
                )
            # EOF, or the file shrank under us: stop with the true count, never pad.
            return
        t.advance(n)
