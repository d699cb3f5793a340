"""``--workers N``: fork N workers on one listening socket and supervise them.

The parent never accepts; it holds the listening socket (so a worker that dies
can be replaced without rebinding), forwards SIGTERM/SIGINT (and the signals
the server asks for, e.g. SIGUSR1 for its stats; others of these are ignored by
the parent, never fatal to it) to the workers and reaps them. Every wait is a
``poll()`` on two pipes: the signal wakeup fd (Python's C-level handler writes
the signal number there, so no signal is lost between a check and a wait, and an
interrupted wait is simply retried) and a readiness pipe each worker writes one
byte to when it accepts.

Policy (documented in docs/proxy.md and docs/serve.md):

* A worker that dies before every worker was ready is a startup failure: the
  others are stopped and the daemon exits with the failed worker's status (it
  printed its own one-line error).
* A worker that dies later, while the daemon is not stopping, is reported and
  replaced at once (its connections are lost, the port never is); more than
  ``RESTART_LIMIT`` deaths within ``RESTART_WINDOW`` seconds means something is
  wrong with every worker: the daemon stops and exits 1.
* On SIGTERM/SIGINT each worker gets the signal and ``grace`` seconds (plus a
  margin of ``KILL_MARGIN`` for its own clean-up) to exit; stragglers are killed
  with SIGKILL and the exit status is 1. ``CLOSE_DELAY`` after the signal (the
  workers have stopped accepting by then) the parent shuts the listening socket
  down for every process sharing it: new clients are refused by the kernel, as
  with one worker, instead of waiting in a backlog nobody accepts from.
* Each worker asks the kernel to SIGTERM it when the parent dies, even by
  SIGKILL (``PR_SET_PDEATHSIG``), so no worker outlives its supervisor.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from .errors import StartupError
from .log import startup_failed

WorkerMain = Callable[[socket.socket, Callable[[], object]], object]

_STOP = (signal.SIGTERM, signal.SIGINT)
# Signals an operator may send that a server need not handle; their default action
# kills the process, so a daemon that does not handle one ignores it.
OPTIONAL = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)
_WATCHED = (
    signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGCHLD
)
KILL_MARGIN = 5.0  # seconds past the grace period before a worker is killed
CLOSE_DELAY = 0.2  # seconds between forwarding SIGTERM and shutting the listener down
READY_TIMEOUT = 60.0  # seconds for every worker to report ready
RESTART_WINDOW = 60.0
RESTART_LIMIT = 5

log = logging.getLogger("zcopy.daemon")


def describe_exit(code: int) -> str:
    """How a process ended, from ``os.waitstatus_to_exitcode``.

    >>> describe_exit(3), describe_exit(-9)
    ('exited with status 3', 'was killed by SIGKILL')
    """
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGTERM this process when ``parent`` dies; exit now if it already has.

    >>> die_with_parent(os.getppid())  # this process's real parent: nothing happens
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not glibc: a worker may outlive a parent killed by SIGKILL
    if os.getppid() != parent:  # the parent died before the request above was in place
        raise SystemExit(1)


def ignore_optional() -> dict[int, Any]:
    """Ignore the ``OPTIONAL`` signals; return the handlers replaced.

    A server installs its own handler for those it handles (``--stats``: SIGUSR1)
    once its loop runs; until then, and for the others, they are ignored instead
    of killing it.

    >>> old = ignore_optional()
    >>> signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN, len(old)
    (True, 3)
    >>> for sig, handler in old.items():
    ...     _ = signal.signal(sig, handler)
    """
    return {sig: signal.signal(sig, signal.SIG_IGN) for sig in OPTIONAL}


def _noop(_signum: int, _frame: object) -> None:
    """The handler's only job is to have Python's C handler write to the wakeup fd."""


class Supervisor:
    """Runs ``worker_main`` in ``count`` forked workers until they are stopped; see the module.

    >>> import socket
    >>> with socket.socket() as s:
    ...     Supervisor("zcopy demo", s, lambda sock, ready: 0, 2, 1.0).count
    2
    """

    def __init__(
        self, name: str, listener: socket.socket, worker_main: WorkerMain, count: int,
        grace: float, on_ready: Callable[[], object] | None = None,
        forward: tuple[int, ...] = (),
    ) -> None:
        self.name = name
        self.listener = listener
        self.worker_main = worker_main
        self.count = count
        self.grace = grace
        self.on_ready = on_ready
        self.forward = forward
        self.workers: dict[int, float] = {}  # pid -> monotonic start time
        self.ready = 0
        self.announced = False
        self.stopping = False
        self.status = 0
        self.deaths: collections.deque[float] = collections.deque()
        self.deadline: float | None = None
        self.close_at: float | None = None  # when to shut the listening socket down
        self._wake = (-1, -1)
        self._ready_pipe = (-1, -1)

    def run(self) -> int:
        """Fork, supervise, reap; return the daemon's exit status."""
        parent_pid = os.getpid()
        self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ready_pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_handlers = {sig: signal.signal(sig, _noop) for sig in _WATCHED}
        old_wakeup = signal.set_wakeup_fd(self._wake[1], warn_on_full_buffer=False)
        try:
            self.deadline = time.monotonic() + READY_TIMEOUT
            for _ in range(self.count):
                if not self._spawn(parent_pid):
                    break
            self._loop(parent_pid)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            for fd in (*self._wake, *self._ready_pipe):
                os.close(fd)
            for pid in self.workers:  # only after an exception in this loop
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return self.status

    # the parent ------------------------------------------------------------------------

    def _loop(self, parent_pid: int) -> None:
        poller = select.poll()
        poller.register(self._wake[0], select.POLLIN)
        poller.register(self._ready_pipe[0], select.POLLIN)
        while self.workers:
            due = [t for t in (self.deadline, self.close_at) if t is not None]
            timeout = None
            if due:
                timeout = max(0, int((min(due) - time.monotonic()) * 1000) + 1)
            poller.poll(timeout)  # retried by Python after a signal (PEP 475)
            for signum in _drain(self._wake[0]):
                self._on_signal(signum)
            self.ready += len(_drain(self._ready_pipe[0]))
            self._reap(parent_pid)
            if not self.announced and not self.stopping and self.ready >= self.count:
                self.announced = True
                self.deadline = None
                if self.on_ready is not None:
                    self.on_ready()
            if self.close_at is not None and time.monotonic() >= self.close_at:
                self.close_at = None
                with contextlib.suppress(OSError):  # for every process that shares it
                    self.listener.shutdown(socket.SHUT_RDWR)
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self._deadline_passed()

    def _on_signal(self, signum: int) -> None:
        if signum in _STOP:
            if not self.stopping:
                log.info(
                    "%s: stopping %d worker(s); they get %gs to finish",
                    signal.Signals(signum).name, len(self.workers), self.grace,
                )
            self._stop(signum)
        elif signum in self.forward:
            self._signal_all(signum)

    def _stop(self, signum: int = signal.SIGTERM) -> None:
        if not self.stopping:
            self.stopping = True
            self.deadline = time.monotonic() + self.grace + KILL_MARGIN
            self.close_at = time.monotonic() + CLOSE_DELAY
        self._signal_all(signum)  # again on a second signal: each server stops only once

    def _deadline_passed(self) -> None:
        if self.stopping:
            log.error(
                "worker(s) %s still running %gs after the grace period: killing them",
                ", ".join(map(str, self.workers)), KILL_MARGIN,
            )
            self._signal_all(signal.SIGKILL)
            self.status = self.status or 1
            self.deadline = None
        else:
            log.error("only %d of %d workers ready after %gs: stopping",
                      self.ready, self.count, READY_TIMEOUT)
            self.status = 1
            self._stop()

    def _reap(self, parent_pid: int) -> None:
        while self.workers:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)  # EINTR retried (PEP 475)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            if self.workers.pop(pid, None) is None:
                continue  # not one of ours (a caller's child)
            self._ended(pid, os.waitstatus_to_exitcode(wait_status), parent_pid)

    def _ended(self, pid: int, code: int, parent_pid: int) -> None:
        if self.stopping:
            if code not in (0, -signal.SIGTERM, -signal.SIGINT, -signal.SIGKILL):
                log.error("worker %d %s while stopping", pid, describe_exit(code))
                self.status = self.status or 1
            return
        if not self.announced:  # it printed its own error; the daemon did not start
            log.error("worker %d %s before it was ready: stopping", pid, describe_exit(code))
            self.status = code if code > 0 else 1
            self._stop()
            return
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths and self.deaths[0] < now - RESTART_WINDOW:
            self.deaths.popleft()
        if len(self.deaths) > RESTART_LIMIT:
            log.error("worker %d %s; %d workers died within %gs: stopping",
                      pid, describe_exit(code), len(self.deaths), RESTART_WINDOW)
            self.status = 1
            self._stop()
            return
        log.warning("worker %d %s; starting a new one", pid, describe_exit(code))
        self._spawn(parent_pid)

    def _signal_all(self, signum: int) -> None:
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _spawn(self, parent_pid: int) -> bool:
        """Fork one worker; on failure (EAGAIN, ENOMEM) say so and stop the daemon."""
        # Blocked across fork: a signal meant for the new worker waits until it has
        # dropped the parent's handlers, instead of landing in the parent's no-op.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
        try:
            pid = os.fork()
            if pid == 0:
                self._child(parent_pid, old_mask)  # never returns
            self.workers[pid] = time.monotonic()
            return True
        except OSError as exc:
            log.error("cannot start a worker: %s; stopping", exc.strerror or exc)
            self.status = 1
            self._stop()
            return False
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    # the worker ------------------------------------------------------------------------

    def _child(self, parent_pid: int, mask: set[signal.Signals | int]) -> None:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in _WATCHED:
                signal.signal(sig, signal.SIG_DFL)
            ignore_optional()  # also when sent to the worker's own pid, or before it is ready
            for fd in (*self._wake, self._ready_pipe[0]):
                os.close(fd)
            ready_fd = self._ready_pipe[1]
            die_with_parent(parent_pid)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

            def ready() -> None:
                with contextlib.suppress(OSError):
                    os.write(ready_fd, b".")

            result = self.worker_main(self.listener, ready)
            status = result if isinstance(result, int) else 0
        except StartupError as exc:
            startup_failed(self.name, str(exc))
            status = exc.status
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # a bug: say where, and let the supervisor decide
            log.exception("worker %d crashed", os.getpid())
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)


def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
