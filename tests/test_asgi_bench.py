"""benchmarks/asgi_bench.py, the ranged measure: more requests than one connection may carry.

`zcopy serve` closes a keep-alive connection after ``--max-requests`` (1,000) requests; the
benchmark used to send every ranged request on one connection, so ``--ranges 1100`` ended
in a traceback ("no response head"). It now opens a new connection every ``PER_CONN``
requests. No figure is judged here (speed is the benchmark's own business): the run must
finish, and every server must have its sample.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "asgi_bench.py"


def test_batches_stay_under_the_per_connection_cap() -> None:
    spec = importlib.util.spec_from_file_location("asgi_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH.parent))
    try:
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(BENCH.parent))
    got = bench.batches(range(3, 1204))
    assert [b[0] for b in got] == [3, 503, 1003] and sum(map(len, got)) == 1201
    assert max(map(len, got)) == bench.PER_CONN < 1000  # zcopy serve's --max-requests


def test_more_ranged_requests_than_one_connection_carries(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--measure", "range", "--only", "static",
         "--only", "zcopy serve --app", "--ranges", "1100", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, f"failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads((tmp_path / "asgi_bench.json").read_text())
    samples = result["samples"]
    assert "zcopy serve (static)" in samples and "zcopy serve --app" in samples
    for name, got in samples.items():
        assert len(got["range"]) == 1 and got["range"][0] > 0, name
