"""``zcopy serve --app``'s ready line is in the daemon's one log format, as static serving's."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from asgi_util import TESTS
from serve_util import SRC

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d zcopy serve\[(\d+)\]: "


def test_the_app_ready_line_is_in_the_one_log_format(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC), ZCOPY_TEST_ROOT=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "zcopy.serve", "--app", "asgi_apps:app", "--app-dir", str(TESTS),
         "--port", "0", "--bind", "127.0.0.1", "--no-access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.fullmatch(
            STAMP + r"serving app asgi_apps:app on http://127\.0\.0\.1:\d+/ "
            r"\(pid (\d+), 1 worker, loop asyncio\)\n",
            line,
        )
        assert m, line
        assert int(m[1]) == int(m[2]) == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
