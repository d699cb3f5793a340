"""Access log in Combined Log Format, and the server's error log.

The byte count in each access-log line is what the fast path itself reported:
the server wraps its socket with ``zcopy.observe`` and sums what each
sendfile call delivered, so a short or aborted body is logged as short.
Lines are buffered and flushed about once a second (and at shutdown).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clf_time(ts: float) -> str:
    """``[10/Oct/2000:13:55:36 +0000]`` in UTC.

    >>> clf_time(0)
    '[01/Jan/1970:00:00:00 +0000]'
    """
    return time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(ts))


def _quote(value: str | None) -> str:
    if value is None:
        return '"-"'
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
    return _line(host, clf_time(ts), request_line, status, nbytes, referer, user_agent)


def _line(
    host: str,
    stamp: str,
    request_line: str,
    status: int,
    nbytes: int,
    referer: str | None,
    user_agent: str | None,
) -> str:
    size = str(nbytes) if nbytes else "-"
    return (
        f"{host} - - {stamp} {_quote(request_line)} {status} {size} "
        f"{_quote(referer)} {_quote(user_agent)}"
    )


class AccessLog:
    """Buffered Combined Log Format writer; ``None`` path means no access log.

    >>> import io
    >>> AccessLog(None).enabled, AccessLog(None, stream=io.StringIO()).enabled
    (False, True)
    """

    __slots__ = ("_owned", "_sec", "_stamp", "_stream", "enabled")

    def __init__(self, path: str | None, stream: TextIO | None = None) -> None:
        self._owned = False
        self.enabled = path is not None or stream is not None
        if stream is not None:
            self._stream: TextIO | None = stream
        elif path is None:
            self._stream = None
        elif path == "-":
            self._stream = sys.stdout
        else:
            self._stream = open(path, "a", encoding="ascii", buffering=1 << 16)  # noqa: SIM115
            self._owned = True
        self._sec = -1
        self._stamp = ""

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
        if self._stream is None:
            return
        sec = int(time.time())
        if sec != self._sec:
            self._sec, self._stamp = sec, clf_time(sec)
        line = _line(host, self._stamp, request_line, status, nbytes, referer, user_agent)
        self._stream.write(line + "\n")

    def flush(self) -> None:
        """Push buffered lines out."""
        if self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        """Flush, and close the file if this log opened it."""
        self.flush()
        if self._owned and self._stream is not None:
            self._stream.close()
        self._stream = None


def error(message: str) -> None:
    """A line on the error log (stderr), flushed at once.

    >>> error("hello")  # to stderr, which a doctest does not compare
    """
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} zcopy serve: {message}", file=sys.stderr, flush=True)
