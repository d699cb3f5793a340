"""zcopy's pytest plugin: the study's "trust strace" as a test habit (docs/testing.md).

Installing zcopy registers it (the ``pytest11`` entry point); nothing to enable.

* ``@pytest.mark.zero_copy`` fails a test in which any ``zcopy`` copy fell back
  to user space, naming the route, the fallback's reason and the call site.
* ``@pytest.mark.zero_copy(strace=True)`` also proves it from outside: the test
  is run again in a child pytest under strace, which fails it if any bytes went
  through user space (read into the process, then written out), by zcopy or by
  anything else, such as a framework's own read loop. With ``CI=true`` a missing
  or forbidden strace fails the test instead of skipping it.
* The ``zcopy_routes`` fixture records the copies made in a ``with`` block.
* ``--zcopy-strict`` treats every test as marked ``zero_copy``.

This module is imported by pytest only; ``import zcopy`` never imports pytest.

>>> import io, zcopy
>>> with recording() as copies:
...     _ = zcopy.copy(io.BytesIO(), b"abc")
>>> copies.routes, copies.fell_back
(['write'], [])
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from ._plan import Route
from ._stats import CopyEvent, listeners

# Set in the child pytest that runs under strace, so it does not start one of its own; its
# value is a file the child writes one byte to as the test's body starts and one as it ends,
# so only the body is judged (not collection, fixtures, or pytest's own bookkeeping).
UNDER_STRACE_ENV = "ZCOPY_PYTEST_UNDER_STRACE"
# Fallbacks listed in a failure message; the rest are counted.
SHOWN = 10
# A re-run under strace that takes longer than this is a hang, not a proof.
STRACE_TIMEOUT = 300.0


class Copies(list[CopyEvent]):
    """The copies heard in a block, in the order they finished (one ``CopyEvent`` each)."""

    @property
    def routes(self) -> list[str]:
        """The route of each copy: ``"sendfile"``, ``"splice"``, ``"userspace"``...

        >>> Copies([CopyEvent("splice", 3, "why", "here")]).routes
        ['splice']
        """
        return [c.route for c in self]

    @property
    def fell_back(self) -> list[CopyEvent]:
        """The copies that went through user space.

        >>> Copies([CopyEvent("userspace", 3, "no fileno()", "t.py:1")]).fell_back[0].reason
        'no fileno()'
        """
        return [c for c in self if not Route(c.route).zero_copy]


@contextmanager
def recording() -> Iterator[Copies]:
    """Record every zcopy copy that finishes inside the block, from any thread."""
    copies = Copies()
    listeners.append(copies.append)
    try:
        yield copies
    finally:
        listeners.remove(copies.append)


def describe(fell: list[CopyEvent]) -> str:
    """The failure message: one line per copy that fell back, with route, reason and site.

    >>> print(describe([CopyEvent("userspace", 9, "user space: no fileno()", "t.py:3 in f")]))
    zcopy copy fell back to user space (1 of them):
      user space, 9 bytes, at t.py:3 in f: user space: no fileno()
    """
    lines = [f"zcopy copy fell back to user space ({len(fell)} of them):"]
    lines += [
        f"  {Route(c.route).label}, {c.nbytes:,} bytes, at {c.site}: {c.reason}"
        for c in fell[:SHOWN]
    ]
    if len(fell) > SHOWN:  # a copy in a loop: the first ones say it all
        lines.append(f"  ... and {len(fell) - SHOWN} more")
    return "\n".join(lines)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zcopy", "zcopy: guard the zero-copy fast path")
    group.addoption(
        "--zcopy-strict",
        action="store_true",
        default=False,
        help="fail any test in which a zcopy copy fell back to user space "
        "(every test as if marked @pytest.mark.zero_copy)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "zero_copy(strace=False): fail the test if a zcopy copy in it fell back to user "
        "space; strace=True also re-runs it under strace and fails on any user-space copy",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    marker = item.get_closest_marker("zero_copy")
    if marker is None and not item.config.getoption("zcopy_strict"):
        return (yield)
    window = os.environ.get(UNDER_STRACE_ENV)
    with recording() as copies, _marked(window):
        result = yield  # a test that failed on its own raises here, and keeps its failure
    if copies.fell_back:
        pytest.fail(describe(copies.fell_back), pytrace=False)
    if marker is not None and marker.kwargs.get("strace") and not window:
        prove_with_strace(item)
    return result


@contextmanager
def _marked(window: str | None) -> Iterator[None]:
    """Under strace: write "[" to the window file before the block and "]" after it."""
    if not window:
        yield
        return
    fd = os.open(window, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"[")
        yield
    finally:
        os.write(fd, b"]")
        os.close(fd)


@pytest.fixture
def zcopy_routes() -> Callable[[], AbstractContextManager[Copies]]:
    """Record the copies of a block: ``with zcopy_routes() as copies: ...``.

    Then ``copies.routes`` lists each copy's route and ``copies.fell_back`` the
    ones that went through user space (each with ``reason`` and ``site``).
    """
    return recording


def prove_with_strace(item: pytest.Item) -> None:
    """Run ``item`` again in a child pytest under strace; fail it on any user-space copy."""
    from .tools import strace
    from .tools.flows import Via, analyse

    why = strace.unavailable_reason()
    if why is not None:
        message = f"zero_copy(strace=True) cannot prove it: {why}"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(f"{message} (CI=true: a proof may not skip)", pytrace=False)
        pytest.skip(message)
    with tempfile.TemporaryDirectory(prefix="zcopy-pytest-") as tmp:
        out = os.path.join(tmp, "strace.out")
        window = os.path.realpath(os.path.join(tmp, "window"))
        open(window, "wb").close()
        argv = [
            *strace.command(out, (*strace.DATA_SYSCALLS, *strace.PROCESS_SYSCALLS)),
            sys.executable, "-m", "pytest", item.nodeid,
            # No output capture to a temporary file: reading it back would be a copy.
            "-q", "-s", "-p", "no:cacheprovider", "--no-header",
        ]
        try:
            child = subprocess.run(
                argv, cwd=item.config.rootpath, env={**os.environ, UNDER_STRACE_ENV: window},
                capture_output=True, text=True, timeout=STRACE_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"the re-run under strace took over {STRACE_TIMEOUT:.0f} s", pytrace=False)
        if child.returncode != 0:
            tail = "\n".join((child.stdout + child.stderr).strip().splitlines()[-15:])
            pytest.fail(f"the re-run under strace failed (exit {child.returncode}):\n{tail}",
                        pytrace=False)
        with open(out, errors="replace") as f:
            calls = strace.parse_lines(f)
    marks = [i for i, c in enumerate(calls) if c.fds and c.fds[0][1] == window]
    if len(marks) != 2:
        pytest.fail(f"the re-run under strace did not run the test's body ({len(marks)} marks)",
                    pytrace=False)
    body = calls[marks[0] + 1 : marks[1]]
    report = analyse(strace.events_from_strace(body, strace.tgids_from_calls(calls)), min_bytes=1)
    copied = [f for f in report.flows if f.via is Via.COPY]
    if copied:
        lines = [f"strace saw bytes copied through user space ({_size(report.copied_bytes)}):"]
        lines += [f"  {_size(f.bytes)} {f.label} by {'/'.join(sorted(f.syscalls))}"
                  for f in copied]
        pytest.fail("\n".join(lines), pytrace=False)
    if not report.zero_copy_bytes:
        pytest.fail("strace saw no zero-copy call (sendfile, splice, copy_file_range) in the "
                    "test's body: nothing went on the fast path, so nothing is proved",
                    pytrace=False)


def _size(n: int) -> str:
    from .tools.report import size

    return size(n)
