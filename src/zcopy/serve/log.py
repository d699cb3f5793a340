"""Access log in Combined Log Format, and the server's error log.

One access line per request, on stderr by default (as ``http.server`` and
uvicorn do), ``--access-log FILE`` to redirect, ``--no-access-log`` to turn it
off. The byte count in each line is what the fast path itself reported: the
server wraps its socket with ``zcopy.observe`` and sums what each sendfile call
delivered, so a short or aborted body is logged as short.

The hot path stays cheap: one cached timestamp string per second, lines kept
in a list and written with one ``write()`` per batch (about once a second, at
512 lines, and at shutdown), each batch whole lines only, so workers appending
to one file never split each other's lines. On a terminal each line goes out at
once. Error lines are in the one daemon log format (``zcopy.daemon.log``).
"""

from __future__ import annotations

import functools
import os
import select
import stat
import time
from typing import TextIO

from ..daemon.log import say

STDERR = "/dev/stderr"  # the default --access-log: this process's fd 2, whatever it is
STDOUT = "-"
_BATCH = 512  # lines buffered before a write
NAME = "zcopy serve"


def clf_time(ts: float) -> str:
    """``[10/Oct/2000:13:55:36 +0000]`` in UTC.

    >>> clf_time(0)
    '[01/Jan/1970:00:00:00 +0000]'
    """
    return _clf_second(int(ts))


@functools.lru_cache(maxsize=2)  # one string per second for every line of that second
def _clf_second(sec: int) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(sec))


def _quote(value: str | None) -> str:
    if value is None:
        return '"-"'
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'  # the usual case, checked in C: nothing to escape
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if 0x20 <= ord(c) < 0x7F else f"\\x{ord(c):02x}" for c in escaped)
    return f'"{escaped}"'


def combined_line(
    host: str,
    ts: float,
    request_line: str,
    status: int,
    nbytes: int,
    referer: str | None,
    user_agent: str | None,
) -> str:
    """One Combined Log Format line (without the newline); quoted fields are escaped.

    >>> combined_line("127.0.0.1", 0, "GET / HTTP/1.1", 200, 5, None, 'a"b')
    '127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "a\\\\"b"'
    """
    size = str(nbytes) if nbytes else "-"
    return (
        f"{host} - - {clf_time(ts)} {_quote(request_line)} {status} {size} "
        f"{_quote(referer)} {_quote(user_agent)}"
    )


class AccessLog:
    """Buffered Combined Log Format writer; ``None`` path means no access log.

    ``path`` is a file (appended to, created), ``"-"`` for stdout or ``STDERR``;
    ``stream`` a text stream instead (tests). Opening fails with ``OSError``.

    >>> import io
    >>> AccessLog(None).enabled, AccessLog(None, stream=io.StringIO()).enabled
    (False, True)
    """

    __slots__ = ("_chunk", "_eager", "_fd", "_lines", "_sec", "_stamp", "_stream", "enabled")

    def __init__(self, path: str | None, stream: TextIO | None = None) -> None:
        self.enabled = path is not None or stream is not None
        self._stream = stream
        self._fd = -1
        self._eager = False
        self._chunk = 1 << 16
        if stream is None and path is not None:
            if path in (STDOUT, "/dev/stdout"):
                self._fd = os.dup(1)
            elif path == STDERR:
                self._fd = os.dup(2)
            else:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                self._fd = os.open(path, flags, 0o644)
            mode = os.fstat(self._fd).st_mode
            if not stat.S_ISREG(mode):
                # A pipe keeps a write whole only up to PIPE_BUF: batches that size at most.
                self._chunk = select.PIPE_BUF
            self._eager = os.isatty(self._fd)  # someone is watching: no delay
        self._lines: list[str] = []

    def write(
        self,
        host: str,
        request_line: str,
        status: int,
        nbytes: int,
        referer: str | None,
        user_agent: str | None,
    ) -> None:
        """Buffer one line."""
        if not self.enabled:
            return
        self._lines.append(combined_line(host, time.time(), request_line, status, nbytes,
                                         referer, user_agent))
        if self._eager or len(self._lines) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        """Push buffered lines out, whole lines per write.

        >>> import io; out = io.StringIO(); log = AccessLog(None, stream=out)
        >>> log.write("h", "GET / HTTP/1.1", 200, 5, None, None); out.getvalue()
        ''
        >>> log.flush(); out.getvalue().count("\\n")
        1
        """
        lines = self._lines
        if not lines:
            return
        self._lines = []
        if self._stream is not None:
            self._stream.write("\n".join(lines) + "\n")
            return
        if self._fd < 0:
            return
        data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
        view = memoryview(data)
        start, total = 0, len(data)
        try:
            while start < total:
                end = total
                if total - start > self._chunk:  # cut after the last whole line that fits
                    end = data.rfind(b"\n", start, start + self._chunk) + 1
                    if end <= start:  # one line longer than a chunk: whole all the same
                        end = data.index(b"\n", start) + 1
                self._write(view[start:end])
                start = end
        except OSError as exc:  # a full disk or a closed pipe must not stop the server
            error(f"access log: {exc.strerror or exc}; access logging turned off")
            self.enabled = False

    def _write(self, view: memoryview) -> None:
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:  # a non-blocking stderr pipe that is full
                select.select([], [self._fd], [], 1.0)
                continue
            view = view[n:]

    def close(self) -> None:
        """Flush, and close this log's own fd."""
        self.flush()
        self.enabled = False
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._stream = None


def error(message: str) -> None:
    """A line on the error log (stderr) in the one daemon format, written at once.

    >>> error("hello")  # on stderr: 2026-12-01 22:40:01 zcopy serve[1234]: hello
    """
    say(NAME, message)
