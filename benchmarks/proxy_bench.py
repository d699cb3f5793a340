"""Proxy-process CPU per GiB: zcopy proxy (splice, --no-splice) against Go io.Copy, HAProxy, socat.

Every proxy relays a download of ``--size`` bytes from the same upstream
(benchmarks/proxy_upstream.py) to a client in this process; the CPU the proxy
process used (utime + stime, its reaped children included, from /proc) is
divided by the GiB moved. Then, unless ``--skip-many``, 1,000 idle connections
plus 50 busy echo connections go through each proxy at once and every echoed
byte is checked. With ``--strace`` a shorter download runs under strace per
proxy and its data-path syscalls are counted (the outside proof of splice).

Peers that are not installed are skipped with a message (install them with
benchmarks/setup_proxy_peers.sh). Run only under the benchmark lock:

    flock /tmp/zcopy-bench.lock .venv/bin/python benchmarks/proxy_bench.py --out proxy.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _common import ROOT, wait_listening

from zcopy.tools import strace
from zcopy.tools._proc import cpu_of, fd_targets, free_port, median

HERE = Path(__file__).resolve().parent
GIB = 1 << 30


def cpu_seconds(pid: int) -> float:
    """CPU time of the proxy, with the children it reaped (socat forks one per client)."""
    return cpu_of(pid, reaped=True).total


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    wait_listening(port, proc, timeout, hello=b"I")  # "I": an idle client, to the upstream


@dataclass
class Peer:
    name: str
    argv: list[str]
    note: str = ""
    many: bool = True  # can hold 1,050 connections in one process
    cleanup: list[Path] = field(default_factory=list)


def peers(up: int, port: int, tmp: Path) -> Iterator[Peer | str]:
    """Each proxy's command line, or a string saying why it is skipped."""
    py = sys.executable
    zc = [py, "-m", "zcopy.proxy", "--listen", f"127.0.0.1:{port}",
          "--upstream", f"127.0.0.1:{up}", "--idle-timeout", "0", "--max-connections", "5000"]
    yield Peer("zcopy proxy (splice)", zc)
    yield Peer("zcopy proxy --no-splice", [*zc, "--no-splice"])
    go = HERE / "goproxy" / "goproxy"
    if go.exists():
        yield Peer("Go io.Copy proxy", [str(go), "-listen", f"127.0.0.1:{port}",
                                        "-upstream", f"127.0.0.1:{up}"], note=_go_version())
    else:
        yield "Go io.Copy proxy: benchmarks/goproxy/goproxy not built (run setup_proxy_peers.sh)"
    if shutil.which("haproxy"):
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(
            "global\n  maxconn 5000\n  nbthread 1\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 300s\n"
            "  timeout server 300s\n  option splice-request\n  option splice-response\n"
            f"listen p\n  bind 127.0.0.1:{port}\n  server u 127.0.0.1:{up}\n"
        )
        yield Peer("HAProxy mode tcp (splice)", ["haproxy", "-db", "-f", str(cfg)],
                   note="nbthread 1, option splice-request/splice-response")
    else:
        yield "HAProxy: not installed (run setup_proxy_peers.sh)"
    if shutil.which("socat"):
        listen = f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=4096"
        yield Peer("socat", ["socat", listen, f"TCP:127.0.0.1:{up}"],
                   note="fork per client, 8 KiB read/write", many=False)
    else:
        yield "socat: not installed (run setup_proxy_peers.sh)"


def _go_version() -> str:
    try:
        return subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def download(port: int, size: int) -> int:
    """Ask the upstream for ``size`` bytes through the proxy; read them into one reused buffer."""
    buf = bytearray(1 << 20)
    got = 0
    with socket.create_connection(("127.0.0.1", port), 30) as s:
        s.sendall(b"S" + size.to_bytes(8, "big"))
        while n := s.recv_into(buf):
            got += n
    if got != size:
        raise RuntimeError(f"download got {got} of {size} bytes")
    return got


def cpu_per_gib(pid: int, port: int, size: int, reps: int) -> list[float]:
    download(port, 1 << 20)  # warm: pools, page cache, JIT-free but first-call costs
    out = []
    for _ in range(reps):
        before = cpu_seconds(pid)
        download(port, size)
        time.sleep(0.3)  # socat: let the parent reap the child so its CPU shows in cutime
        out.append((cpu_seconds(pid) - before) / (size / GIB))
    return out


def pipe_fds(pid: int) -> int:
    return sum(target.startswith("pipe:") for target in fd_targets(pid))


async def many(port: int, pid: int, idle: int, busy: int, each: int) -> dict[str, object]:
    """``idle`` quiet connections held open while ``busy`` echo connections run; check bytes."""
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    idlers: list[socket.socket] = []
    for _ in range(idle):
        s = socket.socket()
        s.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 10)
            await loop.sock_sendall(s, b"I")
        except OSError as exc:
            errors.append(f"idle connect: {exc}")
            s.close()
            continue
        idlers.append(s)
    await asyncio.sleep(0.5)
    idle_pipes = pipe_fds(pid)  # what the quiet connections hold in the proxy
    payload = os.urandom(each)
    digest = hashlib.sha256(payload).hexdigest()

    async def echo() -> None:
        s = socket.socket()
        s.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 10)
            await loop.sock_sendall(s, b"E")

            async def send() -> None:
                await loop.sock_sendall(s, payload)
                s.shutdown(socket.SHUT_WR)

            sender = loop.create_task(send())
            h = hashlib.sha256()
            buf = bytearray(1 << 20)
            got = 0
            while n := await asyncio.wait_for(loop.sock_recv_into(s, buf), 60):
                h.update(memoryview(buf)[:n])
                got += n
            await sender
            if got != each or h.hexdigest() != digest:
                same = h.hexdigest() == digest
                errors.append(f"echo: {got} bytes back of {each}, hash match {same}")
        except (OSError, TimeoutError) as exc:
            errors.append(f"echo: {exc!r}")
        finally:
            s.close()

    t0, cpu0 = time.monotonic(), cpu_seconds(pid)
    await asyncio.gather(*(echo() for _ in range(busy)))
    elapsed, busy_cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    # The idle ones must still be alive: a proxy that dropped them would show EOF now.
    dead = 0
    for s in idlers:
        try:
            if s.recv(1) == b"":
                dead += 1
        except BlockingIOError:
            pass
        except OSError:
            dead += 1
    for s in idlers:
        s.close()
    if dead:
        errors.append(f"{dead} idle connections were closed by the proxy")
    return {"idle": len(idlers), "busy": busy, "proxy_pipe_fds_while_idle": idle_pipes,
            "bytes_each": each, "seconds": round(elapsed, 2),
            "proxy_cpu_s_per_gib_busy": round(busy_cpu / (2 * busy * each / GIB), 3),
            "errors": errors[:5], "error_count": len(errors)}


def traced_syscalls(peer: Peer, up: int, port: int, size: int, tmp: Path) -> dict[str, int]:
    """Data-path syscalls (ret > 0) the proxy made while relaying ``size`` bytes, by strace."""
    out = tmp / "proxy.strace"
    proc = subprocess.Popen([*strace.command(str(out)), *peer.argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        download(port, size)
        time.sleep(0.3)
    finally:
        # strace does not pass SIGTERM on: stop the traced proxy, then strace ends.
        with contextlib.suppress(OSError, ValueError, IndexError):
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            os.kill(int(kids[0]), signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    counts: Counter[str] = Counter()
    for call in strace.parse_lines(out.read_text().splitlines()):
        if call.ret is not None and call.ret > 0 and any("TCP" in w for _, w in call.fds):
            counts[call.name] += 1
    return dict(counts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512 << 20, help="bytes per download (512 MiB)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--busy", type=int, default=50)
    ap.add_argument("--busy-bytes", type=int, default=4 << 20)
    ap.add_argument("--skip-many", action="store_true")
    ap.add_argument("--strace", action="store_true", help="also count syscalls under strace")
    ap.add_argument("--only", action="append", help="run only peers whose name contains this")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--src", type=Path, default=ROOT / "src",
                    help="zcopy source tree the zcopy proxies run from (to compare versions)")
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = dict(os.environ, PYTHONPATH=str(args.src.resolve()))
    upstream = subprocess.Popen([sys.executable, str(HERE / "proxy_upstream.py")],
                                stdout=subprocess.PIPE, text=True)
    assert upstream.stdout is not None
    up = int(upstream.stdout.readline().split()[1])
    results: list[dict[str, object]] = []
    print(f"upstream on {up}; {args.size >> 20} MiB download x {args.reps} per proxy; "
          f"kernel {os.uname().release}; {os.cpu_count()} CPUs", flush=True)
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            for peer in peers(up, free_port(), tmp):
                if isinstance(peer, str):
                    print(f"SKIP {peer}", flush=True)
                    results.append({"skipped": peer})
                    continue
                if args.only and not any(o in peer.name for o in args.only):
                    continue
                results.append(run_peer(peer, up, args, env, tmp))
    finally:
        upstream.terminate()
        upstream.wait(10)
    _table(results, f"{args.idle:,} idle + {args.busy} busy")
    if args.out:
        args.out.write_text(json.dumps({"argv": sys.argv, "kernel": os.uname().release,
                                        "results": results}, indent=2))
    return 0


def run_peer(peer: Peer, up: int, args: argparse.Namespace, env: dict[str, str],
             tmp: Path) -> dict[str, object]:
    port = int(peer.argv[peer.argv.index("--listen") + 1].rsplit(":", 1)[1]) if (
        "--listen" in peer.argv) else _port_of(peer)
    row: dict[str, object] = {"name": peer.name, "note": peer.note}
    proc = subprocess.Popen(peer.argv, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE if "zcopy" in peer.name else subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        per = cpu_per_gib(proc.pid, port, args.size, args.reps)
        row["cpu_s_per_gib"] = round(median(per) or 0.0, 3)
        row["cpu_s_per_gib_runs"] = [round(x, 3) for x in per]
        print(f"{peer.name}: {row['cpu_s_per_gib']} CPU s/GiB (runs {row['cpu_s_per_gib_runs']})",
              flush=True)
        if not args.skip_many:
            if peer.many:
                row["many"] = asyncio.run(
                    many(port, proc.pid, args.idle, args.busy, args.busy_bytes)
                )
                print(f"  many: {row['many']}", flush=True)
            else:
                row["many"] = "skipped: forks one process per client"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if args.strace:
        why = strace.unavailable_reason()
        if why is None:
            row["strace_64MiB"] = traced_syscalls(peer, up, port, 64 << 20, tmp)
            print(f"  strace (64 MiB): {row['strace_64MiB']}", flush=True)
        else:
            row["strace_64MiB"] = f"skipped: {why}"
            print(f"  SKIP strace: {why}", flush=True)
    return row


def _port_of(peer: Peer) -> int:
    for arg in peer.argv:
        if arg.startswith("TCP-LISTEN:"):
            return int(arg.split(":")[1].split(",")[0])
        if arg.startswith("127.0.0.1:") and peer.argv[peer.argv.index(arg) - 1] == "-listen":
            return int(arg.rsplit(":", 1)[1])
    cfg = Path(peer.argv[-1])
    for line in cfg.read_text().splitlines():
        if line.strip().startswith("bind "):
            return int(line.rsplit(":", 1)[1])
    raise ValueError(f"no port in {peer.argv}")


def _table(results: list[dict[str, object]], many_head: str) -> None:
    base = next((r for r in results if r.get("name") == "Go io.Copy proxy"), None)
    go = float(base["cpu_s_per_gib"]) if base else None  # type: ignore[arg-type]
    print(f"\n| proxy | CPU s/GiB | x Go | {many_head} |")
    print("|---|---:|---:|---|")
    for r in results:
        if "skipped" in r:
            continue
        cpu = float(r["cpu_s_per_gib"])  # type: ignore[arg-type]
        ratio = f"{cpu / go:.2f}" if go else "-"
        m = r.get("many")
        many_s = (f"{m['error_count']} errors; {m['proxy_pipe_fds_while_idle']} pipe fds "
                  f"held while idle; busy: {m['seconds']} s, "
                  f"{m['proxy_cpu_s_per_gib_busy']} CPU s/GiB" if isinstance(m, dict)
                  else str(m or "-"))
        print(f"| {r['name']} | {cpu:.3f} | {ratio} | {many_s} |")


if __name__ == "__main__":
    sys.exit(main())
