"""sendfile(2): a regular file to a socket, pipe or device, page cache to kernel buffer."""

from __future__ import annotations

from collections.abc import Generator

from .._errors import NotHandled
from .._plan import Fallback
from .._transfer import BIG, REFUSED, Transfer, Wait, errname


def pump(t: Transfer) -> Generator[Wait, None, None]:
    src_fd, dst_fd = (t.src.fd,), (t.dst.fd,)  # map()'s one-item argument lists
    sendfile = t.kernel.sendfile
    box = t.box
    first = t.moved  # bytes moved before this route ran (a drained read-ahead)
    assert t.offset is not None  # file sources always carry an explicit offset
    while t.remaining != 0:
        t.syscalls += 1
        try:
            # An explicit offset: the shared file position is never trusted or moved.
            # The result is stored from C (see _transfer): a raising signal handler
            # cannot run between the kernel's return and the store.
            box.extend(map(sendfile, dst_fd, src_fd, (t.offset,), (t.want(BIG),)))
        except BlockingIOError:
            yield t.wait_dst()
            continue
        except OSError as exc:
            if t.moved == first and exc.errno in REFUSED:
                raise NotHandled(
                    Fallback.SENDFILE_REFUSED, f"the kernel refused sendfile ({errname(exc)})"
                ) from exc
            raise
        if t.settle() == 0:
            if t.moved == first and t.src.size == 0:
                # Files in /proc and /sys report size 0 yet have content; an
                # honest empty file is confirmed by one read in user space.
                raise NotHandled(
                    Fallback.SENDFILE_ZERO_SIZE,
                    f"src {t.src.label} reports size 0 and sendfile moved nothing "
                    "(a /proc or /sys file?)",
                )
            # EOF, or the file shrank under us: stop with the true count, never pad.
            return
