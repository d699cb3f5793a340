"""``--loop``: one module chooses the event loop for static serving and for apps."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zcopy import daemon
from zcopy.serve.loops import LOOPS, check_loop, run_loop

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("loop", LOOPS)
def test_run_loop_runs_the_coroutine_on_the_loop_asked_for(loop: str) -> None:
    pytest.importorskip(loop)
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__.partition(".")[0])

    run_loop(main(), loop)
    assert seen == [loop]


def test_a_missing_loop_is_a_usage_error_in_both_servers(tmp_path: Path) -> None:
    """uvloop made unimportable: static serving and --app both say so in one line, status 2."""
    (tmp_path / "app_mod.py").write_text("async def app(scope, receive, send): pass\n")
    prelude = (
        "import sys, runpy\nsys.modules['uvloop'] = None\n"
        "sys.argv = ['zcopy', *sys.argv[1:]]\nrunpy.run_module('zcopy', run_name='__main__')"
    )
    for args in ([str(tmp_path)], ["--app", "app_mod:app", "--app-dir", str(tmp_path)]):
        out = subprocess.run(
            [sys.executable, "-c", prelude, "serve", *args, "--port", "0", "--loop", "uvloop"],
            capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(SRC)),
        )
        assert out.returncode == daemon.USAGE, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].endswith(
            "--loop uvloop: uvloop is not installed (pip install uvloop)"
        ), out.stderr


def test_check_loop_accepts_the_stdlib_loop() -> None:
    check_loop("asyncio")
