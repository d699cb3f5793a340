"""zcopy bench: a real --quick run end to end (subprocesses, sockets, strace), and pure parts."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import require_witness

from zcopy.tools.bench import data, options, report, strace_pass
from zcopy.tools.bench.measure import GIB, Cpu, figures, median, parse_stat, spread
from zcopy.tools.bench.modes import MODES
from zcopy.tools.bench.procs import bench_processes
from zcopy.tools.bench.server import FAULT_ENV

SRC = Path(__file__).resolve().parents[1] / "src"
REQUIRED = ("cpu_user_s", "cpu_sys_s", "cpu_ms_per_gib", "mib_per_cpu_s", "wall_mib_s",
            "bytes_verified", "syscalls")


def bench(out: Path, *extra: str, env: dict[str, str] | None = None,
          one_cpu: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``zcopy bench`` as a user would, in a child process, with a hard timeout."""
    def pin() -> None:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    return subprocess.run(
        [sys.executable, "-m", "zcopy.cli", "bench", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=180,
        env=dict(os.environ, PYTHONPATH=str(SRC), **(env or {})),
        preexec_fn=pin if one_cpu else None,
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str],
                                                             dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench") / "out"
    proc = bench(out, "--quick")
    doc = json.loads((out / "results.json").read_text())
    return proc, doc, out


def counts(doc: dict[str, Any], mode: str) -> tuple[dict[str, int | None], int]:
    entry = doc["modes"][mode]
    if entry["syscalls"] is None:  # a skip here, a failure in CI: the columns are a proof
        require_witness("strace", f"no strace pass ran: {doc['notes']}")
    return strace_pass.columns(entry["syscalls"]), entry["file_reads"]


def test_quick_run_verifies_every_available_mode(quick: Any) -> None:
    proc, doc, _ = quick
    assert proc.returncode == 0, proc.stderr
    assert doc["complete"] is True and not doc["failed"]
    assert set(doc["modes"]) | set(doc["skipped"]) == set(MODES)
    assert {"raw", "wrapped", "limit", "observed", "stdlib", "naive", "mmap"} <= set(doc["modes"])
    for mode, entry in doc["modes"].items():
        assert all(k in entry for k in REQUIRED), mode
        assert entry["bytes_verified"] is True, mode
        assert entry["bytes_per_repeat"] == doc["parameters"]["size"] * 2, mode
    for key in ("size", "transfers", "repeat", "modes"):
        assert key in doc["parameters"]
    assert {"cpu", "cpus", "kernel", "python", "pinned"} <= set(doc["machine"])
    assert "server_cpu_softirq_s" in doc["modes"]["raw"]
    assert "raw" in proc.stdout and "CPU ms/GiB" in proc.stdout  # the table


def test_the_default_table_fits_80_columns_and_wide_has_every_column(quick: Any) -> None:
    proc, doc, _ = quick
    lines = proc.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("mode "))
    table = lines[header:header + 1 + len(doc["modes"])]
    assert table[0].split() == ["mode", "route", "CPU", "ms/GiB", "x", "raw", "syscalls"]
    assert all(len(ln) <= 80 for ln in table), table
    assert "\u2501" not in proc.stdout and "\x1b[" not in proc.stdout  # a pipe: plain text
    assert "\u2501" not in proc.stderr and "raw (cpu): 2 of 2 transfers" in proc.stderr
    wide = report.plain_table(report.table_rows(doc, wide=True)).splitlines()
    assert "ms/GiB excl. softirq" in wide[0] and "busy %" in wide[0] and len(wide[0]) > 80


def test_the_closing_sentence_is_computed_from_the_run(quick: Any) -> None:
    proc, doc, _ = quick
    last = proc.stdout.splitlines()[-1]
    assert last == doc["summary"] and last.startswith("This run: ")
    wrapped = doc["modes"]["wrapped"]
    assert f"the read()-only wrapper cost {wrapped['x_raw']:.1f}x" in last
    assert "observe()" in last and "kept sendfile" in last


def test_no_color_on_a_terminal_gets_the_plain_table(tmp_path: Path) -> None:
    # A real terminal (a pty), as a user with NO_COLOR=1 set would run it.
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zcopy", "bench", "--quick", "--modes", "raw", "--no-strace",
         "--out", str(tmp_path / "out")],
        stdin=secondary, stdout=secondary, stderr=secondary,
        env=dict(os.environ, PYTHONPATH=str(SRC), NO_COLOR="1", COLUMNS="100"),
    )
    os.close(secondary)
    seen = b""
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while chunk := os.read(primary, 1 << 16):
            seen += chunk
    os.close(primary)
    assert proc.wait(60) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert not re.search(r"\x1b\[[0-9;]*(?:3[0-9]|4[0-9]|9[0-7])(?:;[0-9;]*)?m", text), "colour"
    table = next(ln for ln in text.splitlines() if ln.startswith("mode "))
    assert table.split() == ["mode", "route", "CPU", "ms/GiB", "x", "raw", "syscalls"]
    assert "raw (cpu): 2 of 2 transfers" in text and "\u2501" not in text  # no redrawn bars


def test_every_pass_says_how_busy_the_servers_core_was(quick: Any) -> None:
    doc = quick[1]
    if not doc["machine"]["pinned"]:
        pytest.skip("one CPU: the server has no core of its own to watch")
    for mode, entry in doc["modes"].items():
        assert all(0.0 <= r["others_share"] <= 1.0 for r in entry["runs"]), mode
    assert doc["load"]["threshold"] == report.BUSY_SHARE
    assert doc["load"]["busy"] == (doc["load"]["others_share_max"] > report.BUSY_SHARE)


def test_a_busy_core_is_measured_and_warned_about(tmp_path: Path) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs: the bench pins its server only then")
    # A real neighbour: a busy loop on the server's CPU for the whole run.
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                              preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    try:
        proc = bench(tmp_path / "out", "--quick", "--modes", "raw", "--no-strace")
    finally:
        burner.kill()
        burner.wait(10)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["modes"]["raw"]["others_share"] > report.BUSY_SHARE
    assert doc["load"]["busy"] is True
    assert "the machine was busy" in proc.stderr and "quiet run" in proc.stderr


def test_figures_under_the_resolution_are_never_a_zero_or_a_ratio(tmp_path: Path) -> None:
    # --quick's size: 32 MiB per pass, so a 10 ms softirq tick is 320 ms per GiB.
    moved = 32 << 20
    results = report.Results(tmp_path / "results.json", {}, {})
    results.add_run("raw", figures(Cpu(0.0, 0.0, 0.006), moved, 0.1, softirq_s=0.01))
    results.add_run("wrapped", figures(Cpu(0.0, 0.0, 0.024), moved, 0.1, softirq_s=0.0))
    raw, wrapped = report.table_rows(results.doc, wide=True)[1:]
    header = report.table_rows(results.doc, wide=True)[0]
    excl = header.index("ms/GiB excl. softirq")
    assert raw[excl] == "<320" and raw[excl + 1] == "n/r"
    assert wrapped[excl] == "768" and wrapped[excl + 1] == "n/r"  # its base is unresolved
    assert raw[header.index("CPU ms/GiB")] == "192"  # schedstat's ns: resolved
    assert wrapped[header.index("x raw")] == "4.00"
    entry = results.doc["modes"]["raw"]
    assert entry["cpu_ms_per_gib_ex_softirq"] == 0.0  # results.json keeps everything...
    assert "cpu_ms_per_gib_ex_softirq" in entry["unresolved"]  # ...and says what it is worth
    assert any(n.startswith("<N: below") for n in report.footnotes([header, raw, wrapped]))


@pytest.mark.parametrize("mode", ["raw", "limit", "observed", "stdlib"])
def test_sendfile_modes_never_read_the_file(quick: Any, mode: str) -> None:
    cols, file_reads = counts(quick[1], mode)
    assert cols["sendfile"] and cols["sendfile"] >= 2  # at least one per transfer
    assert file_reads == 0


@pytest.mark.parametrize("mode", ["wrapped", "naive"])
def test_userspace_modes_read_and_write(quick: Any, mode: str) -> None:
    cols, file_reads = counts(quick[1], mode)
    assert cols["sendfile"] == 0
    # 2 x 16 MiB through buffers of at most 1 MiB (zcopy) or 64 KiB (copyfileobj):
    # every chunk is a read of the file and a write to the socket.
    assert file_reads >= 2 * 16
    assert cols["write"] is not None and cols["write"] >= 2 * 16


def test_mmap_sends_from_memory_without_read_calls(quick: Any) -> None:
    # The file's pages arrive by page faults, which strace cannot see: no read, no sendfile.
    cols, file_reads = counts(quick[1], "mmap")
    assert cols["sendfile"] == 0 and file_reads == 0
    assert cols["write"] is not None and cols["write"] >= 2


def test_proxy_modes_splice_or_copy(quick: Any) -> None:
    doc = quick[1]
    if "proxy-splice" in doc["skipped"]:
        pytest.skip(doc["skipped"]["proxy-splice"])
    splice, _ = counts(doc, "proxy-splice")
    copy, _ = counts(doc, "proxy-copy")
    assert splice["splice"] and splice["splice"] > 0
    assert copy["splice"] == 0 and copy["read"] and copy["write"]


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_charts_are_pngs(quick: Any) -> None:
    out = quick[2]
    for name in ("cpu_ms_per_gib.png", "mib_per_cpu_s.png"):
        width, height = png_size(out / name)
        assert width >= 400 and height >= 200


def test_no_process_left_behind(quick: Any) -> None:
    assert bench_processes(quick[1]["parameters"]["run_id"]) == []


def test_server_crash_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Also: one usable CPU, and no strace on PATH (the children run by absolute path).
    proc = bench(out, "--quick", "--modes", "raw,wrapped,naive",
                 env={FAULT_ENV: "wrapped:1", "PATH": str(tmp_path)}, one_cpu=True)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads((out / "results.json").read_text())
    assert "crashed" in doc["failed"]["wrapped"] and "1 of 2" in doc["failed"]["wrapped"]
    assert "crashed" in proc.stderr
    # The modes before and after it kept their results.
    assert doc["modes"]["raw"]["bytes_verified"] and doc["modes"]["naive"]["bytes_verified"]
    # One usable CPU: said, not pinned.
    assert doc["machine"]["pinned"] is False
    assert any("one CPU" in n for n in doc["notes"])
    assert doc["modes"]["raw"]["syscalls"] is None
    assert any(n.startswith("no syscall counts: strace") for n in doc["notes"])
    assert bench_processes(doc["parameters"]["run_id"]) == []


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = bench(tmp_path / "out", "--quick", "--file", str(tmp_path / "nope.bin"))
    assert proc.returncode == 2
    assert "not a regular file" in proc.stderr


def test_bad_mode_is_refused(tmp_path: Path) -> None:
    proc = bench(tmp_path / "out", "--modes", "raw,bogus")
    assert proc.returncode == 2 and "unknown mode(s) bogus" in proc.stderr


# Pure parts


def test_no_space_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(data.DataError, match="not enough space"):
        data.generate(tmp_path, data.free_bytes(tmp_path) + GIB)
    assert list(tmp_path.iterdir()) == []


def test_median_and_spread() -> None:
    assert median([5.0, 1.0, 3.0, None]) == 3.0
    assert median([1.0, 2.0]) == 1.5
    assert spread([9.0, 10.0, 12.0]) == {"min": 9.0, "max": 12.0, "rel": 0.3}
    assert spread([]) is None


def test_figures_in_the_posts_units() -> None:
    # The Go post's raw row: 0.27 s for 10 x 512 MiB is ~54 ms per GiB.
    f = figures(Cpu(0.02, 0.25), 10 * 512 << 20, 3.2)
    assert round(f.cpu_ms_per_gib) == 54
    assert f.mib_per_cpu_s is not None and round(f.mib_per_cpu_s) == 18963
    assert figures(Cpu(0, 0), 1, 0).mib_per_cpu_s is None


def test_parse_stat_survives_odd_command_names() -> None:
    text = "77 (py (x) y) S 1 77 77 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 1 0"
    assert parse_stat(text, tick=100) == Cpu(2.5, 0.75)


def test_results_schema_and_table(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    results = report.Results(path, {"size": 1 << 20, "transfers": 2, "repeat": 2}, {"cpu": "x"})
    results.add_run("raw", figures(Cpu(0.0, 0.05), GIB, 1.0))
    results.add_run("raw", figures(Cpu(0.0, 0.07), GIB, 1.0))
    on_disk = json.loads(path.read_text())  # written as it goes
    assert on_disk["complete"] is False and round(on_disk["modes"]["raw"]["cpu_ms_per_gib"]) == 60
    results.add_run("wrapped", figures(Cpu(0.1, 0.08), GIB, 1.0))
    results.add_trace("wrapped", {"read": 4, "write": 5, "sendto": 1}, 4)
    results.fail("naive", "naive: the server crashed")
    results.finish()
    doc = json.loads(path.read_text())
    assert doc["complete"] is True and doc["failed"] == {"naive": "naive: the server crashed"}
    wrapped = doc["modes"]["wrapped"]
    assert all(k in wrapped for k in REQUIRED)
    assert wrapped["syscalls"] == {"read": 4, "write": 5, "sendto": 1}
    assert round(wrapped["x_raw"], 1) == 3.0
    assert doc["modes"]["raw"]["spread"]["cpu_ms_per_gib"]["min"] == pytest.approx(50.0)
    table = report.markdown_table(doc).splitlines()
    assert table[0].startswith("| mode | route | user s | sys s | CPU ms/GiB | x raw")
    assert table[3].split("|")[1:3] == [" wrapped ", " user space "]  # measured: no "?"
    assert table[3].split("|")[-5:-1] == [" 0 ", " 0 ", " 4 ", " 6 "]
    assert table[2].split("|")[1:3] == [" raw ", " sendfile? "]  # expected, not traced
    assert table[2].split("|")[-5:-1] == [" - ", " - ", " - ", " - "]


def test_options() -> None:
    assert options.parse_size("512M") == 512 << 20
    with pytest.raises(ValueError):
        options.parse_size("lots")
    with pytest.raises(ValueError, match="unknown mode"):
        options.parse_modes("raw,fast")
    s = options.Settings(size=1, transfers=10, modes=("raw",))
    assert s.strace_transfers == 5


def test_flamegraph_of_a_mode(tmp_path: Path) -> None:
    from zcopy.tools.bench.passes import py_spy

    if py_spy() is None:
        pytest.skip("py-spy is not installed (pip install -e '.[flamegraph]')")
    out = tmp_path / "out"
    # Big enough transfers that a 250 Hz sampler cannot miss them.
    proc = bench(out, "--quick", "--size", "128M", "--modes", "wrapped", "--no-strace",
                 "--flamegraph", "wrapped")
    assert proc.returncode == 0, proc.stderr
    svg = (out / "flamegraph-wrapped.svg").read_text()
    assert "<svg" in svg[:2000] and "(zcopy/_routes/userspace.py" in svg


def test_sigterm_mid_run_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "zcopy.cli", "bench", "--out", str(out), "--size", "64M",
         "--transfers", "1000", "--modes", "naive", "--no-strace"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
    )
    results = out / "results.json"
    try:
        # Wait until the run is under way: results.json exists and a server is up.
        deadline = time.monotonic() + 60
        run_id = None
        while time.monotonic() < deadline:
            if results.exists():
                run_id = json.loads(results.read_text())["parameters"]["run_id"]
                if bench_processes(run_id):
                    break
            time.sleep(0.05)
        assert run_id and bench_processes(run_id), "the run never started its processes"
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == 143
    assert "results so far" in err
    assert json.loads(results.read_text())["complete"] is False
    assert bench_processes(run_id) == []
