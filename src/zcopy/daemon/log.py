"""One log format for every zcopy daemon: ``2026-12-01 22:40:01 zcopy serve[1234]: message``.

Local time to the second, the program's name, the pid of the process that wrote
the line (a worker, or the parent that supervises them), then the message.
``zcopy serve``, ``zcopy proxy`` and ``zcopy trace`` write through the ``zcopy``
logger once ``setup()`` has pointed it at stderr; access logs keep their own
standard format (Combined Log Format) because log tools read them.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from typing import TextIO

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def format_line(name: str, message: str, when: float, pid: int) -> str:
    """The one line format.

    >>> import re
    >>> line = format_line("zcopy serve", "ready", 0.0, 7)
    >>> stamp = r"\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d"
    >>> bool(re.fullmatch(stamp + r" zcopy serve\\[7\\]: ready", line))
    True
    """
    return f"{time.strftime(TIME_FORMAT, time.localtime(when))} {name}[{pid}]: {message}"


class Formatter(logging.Formatter):
    """``logging`` records in the one format (multi-line messages keep one prefix).

    >>> rec = logging.LogRecord("zcopy", logging.INFO, "", 0, "up", None, None)
    >>> Formatter("zcopy proxy").format(rec).endswith(f"zcopy proxy[{rec.process}]: up")
    True
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.program = name

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return format_line(self.program, message, record.created, record.process or 0)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``setup()`` installed, so a second call replaces it."""


def setup(name: str, stream: TextIO | None = None, logger_name: str = "zcopy") -> logging.Logger:
    """Send the ``zcopy`` logger's INFO and above to ``stream`` (stderr) in the one format.

    Calling it again (another subcommand in the same process, a test) replaces the
    handler instead of doubling every line.

    >>> import io
    >>> out = io.StringIO()
    >>> setup("zcopy demo", out, "zcopy-doctest").getChild("proxy").info("listening")
    >>> out.getvalue().rstrip().endswith("]: listening") and " zcopy demo[" in out.getvalue()
    True
    """
    logger = logging.getLogger(logger_name)
    for old in [h for h in logger.handlers if isinstance(h, _Handler)]:
        logger.removeHandler(old)
    handler = _Handler(sys.stderr if stream is None else stream)
    handler.setFormatter(Formatter(name))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def say(name: str, message: str, stream: TextIO | None = None) -> None:
    """One line in the one format, outside ``logging`` (a ready line on stdout), flushed.

    >>> import io; out = io.StringIO(); say("zcopy serve", "hi", out)
    >>> out.getvalue().endswith("]: hi\\n")
    True
    """
    out = sys.stderr if stream is None else stream
    out.write(format_line(name, message, time.time(), os.getpid()) + "\n")
    out.flush()


def startup_failed(name: str, message: str) -> None:
    """A startup error: one plain line on stderr, as argparse prints usage errors.

    >>> startup_failed("zcopy demo", "cannot listen on 127.0.0.1:1: permission denied")
    """
    # One write(2) of the whole line: workers failing at once share the stderr pipe, and
    # print() writes the text and its newline separately, so two lines could run together.
    sys.stderr.flush()
    line = f"{name}: {message}\n".encode(errors="replace")
    try:
        os.write(sys.stderr.fileno(), line)
    except (OSError, ValueError, io.UnsupportedOperation):  # no real fd (a test's StringIO)
        sys.stderr.write(line.decode())
        sys.stderr.flush()
