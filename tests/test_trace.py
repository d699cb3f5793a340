"""``zcopy trace`` on real processes: servers on and off the fast path, run and attach."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_bpftrace, require_strace

from zcopy.tools._proc import free_port
from zcopy.tools.report import telltale
from zcopy.tools.trace import trace

SRC = Path(__file__).resolve().parents[1] / "src"
SIZE = 64 << 20

# One-connection file server: `raw` hands zcopy the file, `wrapped` hides it behind a
# read()-only object (the seed's justReader), `fork` serves each client from a child.
SERVER = r'''
import os, socket, sys, threading, zcopy
mode, path, portfile, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

class JustReader:
    def __init__(self, f): self.f = f
    def read(self, n=-1): return self.f.read(n)

def serve(conn):
    with conn, open(path, "rb") as f:
        conn.recv(1024)
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
        zcopy.copy(conn, JustReader(f) if mode == "wrapped" else f)

srv = socket.create_server(("127.0.0.1", 0))
with open(portfile + ".tmp", "w") as p:
    p.write(str(srv.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
for _ in range(count):
    conn, _ = srv.accept()
    if mode == "fork":
        pid = os.fork()
        if pid == 0:
            serve(conn)
            os._exit(0)
        conn.close()
        os.waitpid(pid, 0)
    else:
        t = threading.Thread(target=serve, args=(conn,))  # a thread born after any attach
        t.start()
        t.join()
'''


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(SRC))


def zcopy_trace(*args: str, environ: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "zcopy.cli", "trace", *args],
        env=environ or env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"zcopy trace did not finish:\n{err}") from None
    return proc.returncode, out, err


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def download(port: int, request: bytes = b"GET / HTTP/1.0\r\n\r\n") -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        c.sendall(request)
        n = 0
        while data := c.recv(1 << 20):
            n += len(data)
    return n


def http_get(url: str) -> int:
    n = 0
    with urllib.request.urlopen(url, timeout=30) as resp:
        while data := resp.read(1 << 20):
            n += len(data)
    return n


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("site")
    path = d / "big.bin"
    with open(path, "wb") as f:
        for _ in range(SIZE >> 20):
            f.write(os.urandom(1 << 20))
    return path


@pytest.fixture
def server_script(tmp_path: Path) -> Path:
    p = tmp_path / "server.py"
    p.write_text(SERVER)
    return p


def traced_server(
    mode: str, big: Path, script: Path, tmp: Path, output: Path | None = None
) -> dict[str, Any]:
    """Run the server under `zcopy trace --json`, download once, return the report."""
    portfile = tmp / "port"
    extra = ["-o", str(output)] if output else []
    proc = zcopy_trace(
        "--json", *extra, "--", sys.executable, str(script), mode, str(big), str(portfile), "1"
    )
    try:
        wait_for(portfile.exists, "the traced server to listen")
        assert download(int(portfile.read_text())) == SIZE + 19
    finally:
        code, out, err = finish(proc)
    assert code == 0, err
    if output:
        assert out == "", "with -o the report goes to the file only"
        out = output.read_text()
    report: dict[str, Any] = json.loads(out)
    return report


def test_raw_server_is_fast_path(
    big_file: Path, server_script: Path, tmp_path: Path, no_fd_leak: None, strace_proof: None
) -> None:
    r = traced_server("raw", big_file, server_script, tmp_path)
    assert r["verdict"] == "fast-path", r["telltale"]
    assert r["backend"] == "strace"
    assert r["zero_copy_bytes"] >= SIZE
    assert r["syscalls"]["sendfile"]["bytes"] == SIZE
    assert r["copied_bytes"] < SIZE // 100
    assert "file -> socket" in r["telltale"] and "sendfile" in r["telltale"]


def test_wrapped_server_is_user_space(
    big_file: Path, server_script: Path, tmp_path: Path, strace_proof: None
) -> None:
    r = traced_server("wrapped", big_file, server_script, tmp_path)
    assert r["verdict"] == "user-space", r["telltale"]
    assert "sendfile" not in r["syscalls"] or r["syscalls"]["sendfile"]["bytes"] == 0
    assert r["copied_bytes"] >= SIZE
    top = r["flows"][0]
    assert (top["src"], top["dst"], top["via"]) == ("file", "socket", "copy")
    assert r["telltale"].startswith("64.0 MiB went file -> socket through")
    assert "the fast path is off" in r["telltale"]


def test_json_schema(
    big_file: Path, server_script: Path, tmp_path: Path, strace_proof: None
) -> None:
    report = traced_server("raw", big_file, server_script, tmp_path, tmp_path / "r.json")
    assert {"verdict", "zero_copy_bytes", "copied_bytes", "syscalls", "backend"} <= report.keys()
    assert report["verdict"] in ("fast-path", "user-space", "mixed", "no-data")
    for name, row in report["syscalls"].items():
        assert {"calls", "bytes", "errors"} <= row.keys(), name
        assert all(isinstance(row[k], int) for k in ("calls", "bytes", "errors"))
    assert isinstance(report["zero_copy_bytes"], int)


def test_idle_process_is_no_data(strace_proof: None) -> None:
    code, out, err = finish(zcopy_trace("--json", "--", "sleep", "0.2"))
    assert code == 0, err
    r = json.loads(out)
    assert r["verdict"] == "no-data"
    assert r["zero_copy_bytes"] == 0 and r["copied_bytes"] == 0
    assert "nothing moved from fd to fd" in r["telltale"]


def test_expect_and_errors(strace_proof: None) -> None:
    code, _, err = finish(zcopy_trace("--expect", "fast-path", "--", "sleep", "0"))
    assert code == 1 and "expected fast-path, got no-data" in err
    code, _, err = finish(zcopy_trace("--", "no-such-command-zcopy"))
    assert code == 2 and "command not found" in err
    code, _, err = finish(zcopy_trace("--backend", "strace", "--pid", "999999999"))
    assert code == 2 and "no process with pid" in err
    code, _, err = finish(zcopy_trace())
    assert code == 2 and "--pid" in err


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    return finish(proc)


def test_http_server_is_user_space(big_file: Path, tmp_path: Path, strace_proof: None) -> None:
    port = free_port()
    report = tmp_path / "r.json"  # the server prints to stdout too
    proc = zcopy_trace(
        "--json", "-o", str(report), "--", sys.executable, "-m", "http.server", str(port),
        "--bind", "127.0.0.1", "--directory", str(big_file.parent),
    )
    try:
        wait_for(lambda: port_open(port), "http.server to listen")
        assert http_get(f"http://127.0.0.1:{port}/big.bin") == SIZE
    finally:
        code, _, err = _stop(proc)  # SIGINT to zcopy trace stops the command, then reports
    assert code == 0, err
    r = json.loads(report.read_text())
    assert r["verdict"] == "user-space", r["telltale"]
    assert "file -> socket" in r["telltale"]


def test_zcopy_serve_is_fast_path(big_file: Path, tmp_path: Path, strace_proof: None) -> None:
    port = free_port()
    report = tmp_path / "r.json"
    proc = zcopy_trace(
        "--json", "-o", str(report), "--", sys.executable, "-m", "zcopy.cli", "serve",
        str(big_file.parent), "--port", str(port), "--bind", "127.0.0.1",
    )
    try:
        wait_for(lambda: port_open(port), "zcopy serve to listen")
        assert http_get(f"http://127.0.0.1:{port}/big.bin") == SIZE
    finally:
        code, _, err = _stop(proc)
    assert code == 0, err
    r = json.loads(report.read_text())
    assert r["verdict"] == "fast-path", r["telltale"]


@pytest.fixture
def attach_target(big_file: Path, server_script: Path, tmp_path: Path) -> Iterator[
    tuple[subprocess.Popen[bytes], int]
]:
    portfile = tmp_path / "port"
    target = subprocess.Popen(
        [sys.executable, str(server_script), "fork", str(big_file), str(portfile), "2"], env=env()
    )
    try:
        wait_for(portfile.exists, "the server to listen")
        yield target, int(portfile.read_text())
    finally:
        target.kill()
        target.wait(10)


def attach(backend: str, target: subprocess.Popen[bytes], port: int) -> dict[str, Any]:
    proc = zcopy_trace("--json", "--backend", backend, "--pid", str(target.pid))
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], 60)
    assert ready, "zcopy trace printed nothing in 60 s"
    banner = proc.stderr.readline()  # printed once the tracer is in: nothing is missed after
    assert "attached to pid" in banner, banner + (proc.stderr.read() if proc.poll() else "")
    assert download(port) == SIZE + 19  # served by a child forked after the attach
    code, out, err = _stop(proc)
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    assert target.poll() is None, "detaching left the server running"
    return report


def test_attach_follows_children(
    attach_target: tuple[subprocess.Popen[bytes], int], no_fd_leak: None, strace_proof: None
) -> None:
    target, port = attach_target
    r = attach("strace", target, port)
    assert r["backend"] == "strace"
    assert r["verdict"] == "fast-path", r["telltale"]
    assert r["syscalls"]["sendfile"]["bytes"] == SIZE
    assert download(port) == SIZE + 19, "the server still serves after the tracer left"


def test_bpftrace_attach(attach_target: tuple[subprocess.Popen[bytes], int]) -> None:
    require_bpftrace()
    target, port = attach_target
    r = attach("bpftrace", target, port)
    assert r["backend"] == "bpftrace"
    assert r["verdict"] == "fast-path", r["telltale"]
    assert r["syscalls"]["sendfile"]["bytes"] == SIZE
    assert r["notes"], "the coarser fd classification is said"


@pytest.mark.parametrize("backend", ["strace", "bpftrace"])
def test_in_process_api_leaves_nothing_open(backend: str, no_fd_leak: None) -> None:
    require_bpftrace() if backend == "bpftrace" else require_strace()
    code = "import os; os.write(1, b'x' * (2 << 20))"  # 2 MiB from memory: not payload
    report = trace([sys.executable, "-c", code], backend=backend)
    assert report.backend == backend
    assert report.verdict == "no-data", telltale(report)
    assert report.syscalls["write"].bytes == 2 << 20
    assert report.from_memory_bytes > 1 << 20


def test_no_tracer_is_a_clear_error(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sleep").symlink_to("/bin/sleep")
    no_tracers = dict(env(), PATH=str(bin_dir))
    for backend, words in (("strace", "strace is not installed"),
                           ("bpftrace", "bpftrace is not installed")):
        proc = zcopy_trace("--backend", backend, "--", "sleep", "0", environ=no_tracers)
        code, out, err = finish(proc)
        assert code == 2, (backend, err)
        assert words in err and out == ""


def test_seconds_stops_a_command_that_would_run_on(strace_proof: None) -> None:
    code, out, err = finish(zcopy_trace("--json", "--seconds", "0.5", "--", "sleep", "600"), 60)
    assert code == 128 + signal.SIGINT, err  # the command's status: stopped by SIGINT
    assert json.loads(out)["verdict"] == "no-data"


def test_exit_status_is_the_commands_unless_expect_missed(strace_proof: None) -> None:
    # As `time` and `strace` do: zcopy trace -- CMD can stand in for CMD in a script.
    assert finish(zcopy_trace("-o", os.devnull, "--", "sh", "-c", "exit 3"))[0] == 3
    assert finish(zcopy_trace("-o", os.devnull, "--", "sh", "-c", "exit 0"))[0] == 0
    killed = finish(zcopy_trace("-o", os.devnull, "--", "sh", "-c", "kill -TERM $$"))
    assert killed[0] == 128 + signal.SIGTERM
    # --expect keeps its own status: 1 on a miss whatever the command did...
    code, _, err = finish(zcopy_trace("-o", os.devnull, "--expect", "fast-path", "--",
                                      "sh", "-c", "exit 0"))
    assert code == 1
    # ...in the one log format: local time, program[pid]: message
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d zcopy trace\[\d+\]: "
                     r"expected fast-path, got no-data$", err, re.M), err
    # ...and the command's status when the verdict is the expected one.
    code, _, _ = finish(zcopy_trace("-o", os.devnull, "--expect", "no-data", "--",
                                    "sh", "-c", "exit 4"))
    assert code == 4


def test_json_stays_parseable_when_the_command_prints(strace_proof: None) -> None:
    chatty = ["sh", "-c", "echo hello; echo '{not json'; exit 5"]
    code, out, err = finish(zcopy_trace("--json", "--", *chatty))
    assert code == 5
    assert json.loads(out)["verdict"] == "no-data"  # stdout holds the JSON and nothing else
    assert "hello\n{not json\n" in err  # the command's stdout went to stderr
    # With -o the report goes to the file and the command keeps its stdout.
    code, out, err = finish(zcopy_trace("--json", "-o", os.devnull, "--", *chatty))
    assert code == 5 and out == "hello\n{not json\n", err


RELAY = r"""
import os, socket, threading, zcopy
def pair():
    with socket.create_server(("127.0.0.1", 0)) as s:
        c = socket.create_connection(s.getsockname()); p, _ = s.accept()
    return c, p
a, a_peer = pair()
b, b_peer = pair()
def feed():
    a_peer.sendall(os.urandom(4 << 20)); a_peer.close()
def drain():
    while b_peer.recv(1 << 20): pass
threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
for t in threads: t.start()
assert zcopy.copy(b, a) == 4 << 20
b.shutdown(socket.SHUT_WR)
for t in threads: t.join()
"""


def test_socket_to_socket_splice_counts_each_byte_once(
    no_fd_leak: None, strace_proof: None
) -> None:
    report = trace([sys.executable, "-c", RELAY], backend="strace")
    top = report.flows[0]
    assert (top.label, top.via, top.bytes) == ("socket -> socket", "zero-copy", 4 << 20)
    assert report.syscalls["splice"].bytes == 8 << 20, "in and out of the pipe"
    assert report.zero_copy_bytes == 4 << 20
    assert report.verdict == "fast-path", telltale(report)
