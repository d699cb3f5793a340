"""A live ``zcopy serve`` and the signals an operator may send it besides SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from serve_util import ServeProc, get, wait_for

OPTIONAL = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_bytes(b"a\n")
    return tmp_path


@pytest.mark.parametrize("workers", ["1", "2"])
def test_signals_nothing_handles_never_kill_it(site: Path, workers: str) -> None:
    with ServeProc(site, "--workers", workers) as s:
        for _ in range(3):
            for sig in OPTIONAL:
                os.kill(s.pid, sig)
        time.sleep(0.3)
        assert s.proc.poll() is None
        assert get(s.port, "/a.txt").status == 200
        assert s.stop() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_sigusr1_prints_the_stats_of_every_worker_with_stats_on(site: Path, workers: int) -> None:
    with ServeProc(site, "--stats", "--workers", str(workers)) as s:
        assert get(s.port, "/a.txt").status == 200
        os.kill(s.pid, signal.SIGUSR1)
        wait_for(lambda: s.stderr().count("stats (pid") == workers, what="a stats line a worker")
        assert s.proc.poll() is None
        assert s.stop() == 0
