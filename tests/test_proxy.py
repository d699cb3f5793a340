"""zcopy proxy as a user runs it: a real subprocess between real TCP clients and upstreams."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SRC, Drain, require_strace

from zcopy.tools import strace
from zcopy.tools._proc import children, fd_targets, free_port

KIB = 1024
MIB = 1024 * KIB


class EchoServer:
    """Echoes every connection until EOF, then half-closes: one thread, selectors."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=2048)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.conns: dict[socket.socket, bytearray] = {}
        self.stopping = False
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            for key, _ in self.sel.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            c, _ = self.listener.accept()
                            c.setblocking(False)
                            self.accepted += 1
                            self.conns[c] = bytearray()
                            self.sel.register(c, selectors.EVENT_READ)
                    continue
                self._serve(sock)

    def _serve(self, c: socket.socket) -> None:
        try:
            data = c.recv(MIB)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        try:
            if data:
                c.setblocking(True)  # a short blocking send keeps this server simple
                c.sendall(data)
                c.setblocking(False)
                return
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.sel.unregister(c)
        del self.conns[c]
        c.close()

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        for c in list(self.conns):
            c.close()
        self.sel.close()
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


class Proxy:
    """``zcopy proxy`` in a subprocess; its stderr is collected line by line."""

    def __init__(
        self,
        *upstreams: int,
        extra: tuple[str, ...] = (),
        prefix: list[str] | None = None,
        module: tuple[str, ...] = ("zcopy.proxy",),
    ) -> None:
        argv = [sys.executable, "-m", *module, "--listen", "127.0.0.1:0"]
        for port in upstreams:
            argv += ["--upstream", f"127.0.0.1:{port}"]
        env = dict(os.environ, PYTHONPATH=str(SRC))
        self.proc = subprocess.Popen(
            [*(prefix or []), *argv, *extra], stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        line = self.wait_for(r"listening on 127\.0\.0\.1:(\d+)")
        self.port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", line)[1])  # type: ignore[index]
        self.pid = self.proc.pid
        if prefix:  # under strace: signals go to the traced proxy, strace's child
            self.pid = children(self.pid)[0]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 20, start: int = 0) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r} in:\n" + self.log())
                self.cond.wait(min(left, 0.2))

    def log(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=20)

    def stats(self) -> dict[str, object]:
        start = len(self.lines)
        os.kill(self.pid, signal.SIGUSR1)
        line = self.wait_for("stats-json ", start=start)
        return json.loads(line.split("stats-json ", 1)[1])  # type: ignore[no-any-return]

    def fds(self) -> list[str]:
        return fd_targets(self.pid)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.reader.join(5)

    def kill(self) -> None:
        if self.pid != self.proc.pid:  # strace would leave its tracee running
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(5)


@contextlib.contextmanager
def running(
    *upstreams: int, extra: tuple[str, ...] = (), module: tuple[str, ...] = ("zcopy.proxy",)
) -> Iterator[Proxy]:
    p = Proxy(*upstreams, extra=extra, module=module)
    try:
        yield p
    finally:
        p.kill()


def roundtrip(proxy: Proxy, data: bytes) -> bytes:
    """Send data and half-close while reading the echo back (both directions at once)."""
    with proxy.connect() as c:
        back = Drain(c)

        def send() -> None:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        got = back.result(60)
        t.join(10)
        return got


@pytest.mark.parametrize("mode", [(), ("--no-splice",)], ids=["splice", "no-splice"])
def test_byte_exact_both_ways_and_stats(echo: EchoServer, mode: tuple[str, ...]) -> None:
    sizes = [0, 1, 64 * KIB, MIB]
    with running(echo.port, extra=mode) as proxy:
        for size in sizes:
            data = os.urandom(size)
            assert hashlib.sha256(roundtrip(proxy, data)).digest() == hashlib.sha256(data).digest()
        st = proxy.stats()  # SIGUSR1
        total = sum(sizes)
        conns = st["connections"]
        assert conns["total"] == len(sizes) and conns["failed"] == 0  # type: ignore[index]
        assert st["bytes"] == {"client_to_upstream": total, "upstream_to_client": total}
        routes = st["zcopy"]["routes"]  # type: ignore[index]
        route = "userspace" if mode else "splice"
        assert routes[route]["bytes"] == 2 * total and len(routes) == 1
        if mode:
            assert st["zcopy"]["fallbacks"] == {"no-splice": 2 * len(sizes)}  # type: ignore[index]
            proxy.wait_for(r"route client->upstream: user space: splice turned off")
        else:
            proxy.wait_for(r"route client->upstream: splice: .*TCP socket.*through a pipe")
        assert proxy.stop() == 0
        proxy.wait_for(r"\]: stopped")


def test_zcopy_proxy_subcommand_relays(echo: EchoServer) -> None:
    """The interface other tools drive: ``zcopy proxy --listen ... --upstream ...``."""
    with running(echo.port, module=("zcopy.cli", "proxy")) as proxy:
        assert roundtrip(proxy, b"via the zcopy command") == b"via the zcopy command"
        assert proxy.stop() == 0


def test_refused_upstream_is_skipped_for_the_next(echo: EchoServer) -> None:
    down = free_port()
    with running(down, echo.port) as proxy:
        for i in range(4):  # round-robin puts the dead one first every other time
            assert roundtrip(proxy, b"hello %d" % i) == b"hello %d" % i
        proxy.wait_for(rf"upstream 127\.0\.0\.1:{down} failed .*refused.*trying the next")
        assert echo.accepted == 4


def test_all_upstreams_down_closes_client_promptly_and_logs() -> None:
    with running(free_port(), free_port()) as proxy, proxy.connect() as c:
        c.settimeout(10)
        assert c.recv(10) == b""
        proxy.wait_for(r"client 127\.0\.0\.1:\d+ closed: no upstream accepted")
        assert proxy.stats()["connections"]["failed"] == 1  # type: ignore[index]


def _abort(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_upstream_reset_resets_the_client() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as up,
        running(up.getsockname()[1]) as proxy,
        proxy.connect() as c,
    ):
        u, _ = up.accept()
        c.sendall(b"x" * 1000)
        u.settimeout(10)
        assert u.recv(1000)
        _abort(u)
        with pytest.raises(ConnectionResetError):
            while c.recv(65536):
                pass
        proxy.wait_for(r"reset 127\.0\.0\.1:\d+ <-> 127\.0\.0\.1:\d+")


def test_client_reset_mid_stream_resets_the_upstream() -> None:
    with socket.create_server(("127.0.0.1", 0)) as up, running(up.getsockname()[1]) as proxy:
        c = proxy.connect()
        u, _ = up.accept()
        with u:
            c.sendall(os.urandom(256 * KIB))
            u.settimeout(10)
            assert u.recv(1000)
            _abort(c)
            with pytest.raises(ConnectionResetError):
                while u.recv(65536):
                    pass
        proxy.wait_for(r"reset 127\.0\.0\.1:\d+ <-> ")
        st = proxy.stats()
        assert st["connections"] == {
            "active": 0, "total": 1, "failed": 1, "refused": 0, "idle_closed": 0,
        }


def test_idle_timeout_closes_quiet_connection(echo: EchoServer) -> None:
    with running(echo.port, extra=("--idle-timeout", "0.5")) as proxy, proxy.connect() as c:
        c.sendall(b"hi")
        assert c.recv(10) == b"hi"
        c.settimeout(15)
        assert c.recv(10) == b""  # closed by the proxy, not by us
        proxy.wait_for(r"closed 127\.0\.0\.1:\d+ <-> .*idle for 0\.5s")


def test_connection_cap_refuses_with_a_log_line(echo: EchoServer) -> None:
    with running(echo.port, extra=("--max-connections", "2")) as proxy:
        held = [proxy.connect() for _ in range(2)]
        try:
            for c in held:  # both are being served
                c.sendall(b"ok")
                assert c.recv(10) == b"ok"
            with proxy.connect() as third:
                third.settimeout(10)
                assert third.recv(10) == b""
            proxy.wait_for(r"refused client 127\.0\.0\.1:\d+: connection cap reached "
                           r"\(2 open, --max-connections 2\)")
        finally:
            for c in held:
                c.close()
        deadline = time.monotonic() + 10
        while proxy.stats()["connections"]["active"] and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.05)
        assert roundtrip(proxy, b"after") == b"after"  # room again once they left


def _kinds(fds: list[str]) -> dict[str, int]:
    out = {"socket": 0, "pipe": 0}
    for link in fds:
        for kind in out:
            if link.startswith(kind + ":"):
                out[kind] += 1
    return out


def test_no_fd_or_pipe_leak_after_1000_connections(echo: EchoServer) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2600:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the 2,600 this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2600), hard))
    try:
        with running(echo.port, extra=("--idle-timeout", "0")) as proxy:
            assert roundtrip(proxy, b"warm") == b"warm"
            time.sleep(0.2)
            base = _kinds(proxy.fds())
            clients = []
            try:
                for _ in range(1000):  # all open at once, each one moves bytes both ways
                    c = proxy.connect()
                    clients.append(c)
                    c.sendall(b"ping")
                for c in clients:
                    assert c.recv(10) == b"ping"
                during = _kinds(proxy.fds())
                # 2,000 sockets, but idle connections hold no pipe: at most the pool's 16.
                assert during["socket"] == base["socket"] + 2000
                assert during["pipe"] <= base["pipe"] + 2 * 16, during
            finally:
                for c in clients:
                    c.close()
            deadline = time.monotonic() + 20
            while _kinds(proxy.fds())["socket"] > base["socket"] and time.monotonic() < deadline:
                time.sleep(0.1)
            after = _kinds(proxy.fds())
            assert after["socket"] == base["socket"], after
            assert after["pipe"] <= base["pipe"] + 2 * 16, after
            st = proxy.stats()
            assert st["connections"]["total"] == 1001  # type: ignore[index]
            assert st["connections"]["active"] == 0  # type: ignore[index]
            assert st["connections"]["failed"] == 0  # type: ignore[index]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_sigterm_stops_accepting_and_lets_open_connections_finish(echo: EchoServer) -> None:
    with running(echo.port) as proxy:
        c = proxy.connect()
        with c:
            c.sendall(b"before")
            assert c.recv(10) == b"before"
            start = len(proxy.lines)
            os.kill(proxy.pid, signal.SIGTERM)
            proxy.wait_for(r"stopping: no new clients; 1 open connection", start=start)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()
            c.sendall(b"during")  # the open one still flows
            assert c.recv(10) == b"during"
            c.shutdown(socket.SHUT_WR)
            assert c.recv(10) == b""
        assert proxy.proc.wait(20) == 0
        proxy.wait_for(r"connections: active 0, total 1, failed 0")


def test_workers_share_the_port(echo: EchoServer) -> None:
    with running(echo.port, extra=("--workers", "2")) as proxy:
        proxy.wait_for(r"workers: 2")
        for i in range(8):
            assert roundtrip(proxy, b"w%d" % i) == b"w%d" % i
        assert proxy.stop() == 0
        pids = set(re.findall(r"zcopy proxy\[(\d+)\]: stopped", proxy.log()))
        assert len(pids) == 2


@pytest.mark.parametrize("mode", [(), ("--no-splice",)], ids=["splice", "no-splice"])
def test_strace_payload_goes_by_splice_only(
    echo: EchoServer, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    require_strace()
    out = tmp_path / "proxy.strace"
    proxy = Proxy(echo.port, extra=mode, prefix=strace.command(str(out)))
    try:
        data = os.urandom(8 * MIB)
        assert roundtrip(proxy, data) == data
        assert proxy.stop(60) == 0
    finally:
        proxy.kill()
    calls = strace.parse_lines(out.read_text().splitlines())
    on_tcp = [c for c in calls if c.ok and c.ret and any("TCP" in w for _, w in c.fds)]
    moved = sum(c.ret for c in on_tcp if c.name == "splice" and c.ret)
    others = sorted({c.name for c in on_tcp if c.name != "splice"})
    if mode:  # the comparison mode reads and writes the payload itself
        assert moved == 0 and {"readv", "write"} <= set(others), others
        return
    # Every payload byte crosses a pipe twice: socket->pipe, then pipe->socket, each way.
    assert moved == 4 * len(data)
    assert others == [], f"payload syscalls on TCP sockets besides splice: {others}"


# --- the daemon side: exclusive port, workers, startup errors, grace, memory ------------


def _proxy_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(
        [sys.executable, "-m", "zcopy.proxy", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_proxy_on_the_same_address_fails(echo: EchoServer, workers: str) -> None:
    """Item 10: no SO_REUSEPORT, so a second (hijacking) instance cannot take traffic."""
    with running(echo.port, extra=("--workers", workers)) as proxy:
        second = _proxy_cli("--listen", f"127.0.0.1:{proxy.port}",
                            "--upstream", f"127.0.0.1:{echo.port}", "--workers", workers)
        assert second.returncode == 1
        assert second.stderr.splitlines() == [
            f"zcopy proxy: cannot listen on 127.0.0.1:{proxy.port}: address already in use "
            "(another server is listening there)"
        ]
        for i in range(8):  # every client still reaches the first proxy
            assert roundtrip(proxy, b"mine %d" % i) == b"mine %d" % i
        assert proxy.stop() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("listen", "status", "words"),
    [
        ("127.0.0.1:99999", 2, "port 99999 is out of range"),
        ("999.1.1.1:8080", 2, "'999.1.1.1' is not a valid address"),
        ("192.0.2.1:8080", 1, "cannot assign requested address"),
    ],
)
def test_startup_errors_are_one_line_and_a_status(
    listen: str, status: int, words: str, workers: str
) -> None:
    done = _proxy_cli("--listen", listen, "--upstream", "127.0.0.1:9", "--workers", workers)
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    *usage, last = done.stderr.splitlines()  # argparse shows the usage before its one line
    assert last.startswith("zcopy proxy: ") and words in last
    assert not usage or usage[0].startswith("usage: zcopy proxy")


def _worker_pids(pid: int) -> set[int]:
    return set(children(pid))


def test_workers_share_one_socket_and_each_serves(echo: EchoServer) -> None:
    """Item 10: ``--workers 2`` is one listening socket; each worker takes clients."""
    with running(echo.port, extra=("--workers", "2")) as proxy:
        kids = _worker_pids(proxy.pid)
        assert len(kids) == 2
        listening = [ln for ln in Path("/proc/net/tcp").read_text().splitlines()
                     if f":{proxy.port:04X} 00000000:0000 0A" in ln]
        assert len(listening) == 1  # one socket, not one per worker
        for busy in kids:  # with one stopped, the other must serve every client
            os.kill(busy, signal.SIGSTOP)
            try:
                for i in range(3):
                    assert roundtrip(proxy, b"w%d" % i) == b"w%d" % i
            finally:
                os.kill(busy, signal.SIGCONT)
        start = len(proxy.lines)
        os.kill(proxy.pid, signal.SIGUSR1)  # forwarded to each worker
        totals: dict[int, int] = {}
        deadline = time.monotonic() + 20
        while len(totals) < 2 and time.monotonic() < deadline:
            proxy.wait_for("stats-json ", start=start)
            for line in proxy.lines[start:]:
                if "stats-json " in line:
                    st = json.loads(line.split("stats-json ", 1)[1])
                    totals[st["pid"]] = st["connections"]["total"]
            time.sleep(0.05)
        assert totals == {kid: 3 for kid in kids}
        assert proxy.stop() == 0


def test_sigterm_with_workers_refuses_new_clients_and_lets_open_ones_finish(
    echo: EchoServer,
) -> None:
    with running(echo.port, extra=("--workers", "2")) as proxy, proxy.connect() as c:
        c.sendall(b"before")
        assert c.recv(10) == b"before"
        start = len(proxy.lines)
        os.kill(proxy.pid, signal.SIGTERM)
        proxy.wait_for(r"SIGTERM: stopping 2 worker", start=start)
        deadline = time.monotonic() + 5
        while True:  # refused by the kernel once the shared socket is shut down (0.2 s)
            try:
                socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "new clients still accepted while stopping"
            time.sleep(0.02)
        c.sendall(b"during")  # the open one still flows
        assert c.recv(10) == b"during"
        c.shutdown(socket.SHUT_WR)
        assert c.recv(10) == b""
        assert proxy.proc.wait(20) == 0
        assert "accept failed" not in proxy.log()


def test_log_lines_have_one_format_with_timestamps(echo: EchoServer) -> None:
    with running(echo.port) as proxy:
        assert proxy.stop() == 0
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d zcopy proxy\[\d+\]: "
    assert proxy.lines and all(re.match(stamp, ln) for ln in proxy.lines), proxy.log()
    assert re.match(stamp + r"listening on .*press Ctrl\+C to stop", proxy.lines[0])


class Firehose:
    """An upstream that sends ``size`` bytes to every connection, then waits for its EOF."""

    def __init__(self, size: int = 4 * MIB) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self.listener.getsockname()[1]
        self.size = size
        self.stopping = False
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopping:
            try:
                c, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._pour, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _pour(self, c: socket.socket) -> None:
        chunk = b"z" * (256 * KIB)
        c.settimeout(30)
        with c, contextlib.suppress(OSError):
            for _ in range(self.size // len(chunk)):
                if self.stopping:
                    return
                c.sendall(chunk)
            while c.recv(65536):  # hold the connection until the proxy closes it
                pass

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.listener.close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def firehose() -> Iterator[Firehose]:
    server = Firehose()
    try:
        yield server
    finally:
        server.close()


def test_grace_expiry_resets_a_flowing_stream(firehose: Firehose) -> None:
    """Item 11: a stream cut at the end of --grace ends in a reset, never a clean EOF."""
    firehose.size = 1 << 40  # still flowing when the grace period ends
    with running(firehose.port, extra=("--grace", "0.5")) as proxy, proxy.connect() as c:
        c.settimeout(10)
        assert c.recv(65536)  # flowing
        os.kill(proxy.pid, signal.SIGTERM)
        got = 0
        with pytest.raises(ConnectionResetError):
            while True:  # keep reading: the stream is still flowing when the grace ends
                data = c.recv(65536)
                assert data, f"clean EOF after {got} bytes: a cut stream looked complete"
                got += len(data)
        assert proxy.proc.wait(20) == 0
        proxy.wait_for(r"grace period over: resetting 1 connection")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_no_splice_memory_goes_back_after_rounds_of_non_reading_clients(
    firehose: Firehose,
) -> None:
    """Item 12: 3 rounds of 200 clients that never read; RSS returns once they are gone.

    Each stuck relay holds a 1 MiB user-space buffer (about 200 MiB at the peak);
    splice mode holds nothing in user space and needs no such test.
    """
    with running(firehose.port, extra=("--no-splice",)) as proxy:
        with proxy.connect() as warm:
            warm.settimeout(10)
            assert warm.recv(10)
        base = _rss_mib(proxy.pid)
        after: list[float] = []
        peak: list[float] = []
        for _ in range(3):
            clients = []
            for _ in range(200):
                c = socket.socket()
                c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
                c.connect(("127.0.0.1", proxy.port))
                clients.append(c)
            # Until every relay is stuck on its client: the byte count stops moving.
            deadline, moved = time.monotonic() + 20, -1
            while True:
                st = proxy.stats()
                now = st["bytes"]["upstream_to_client"]  # type: ignore[index]
                if st["connections"]["active"] == 200 and now == moved:  # type: ignore[index]
                    break
                assert time.monotonic() < deadline, st
                moved = now
                time.sleep(0.3)
            peak.append(_rss_mib(proxy.pid))
            for c in clients:
                c.close()
            deadline = time.monotonic() + 20
            while proxy.stats()["connections"]["active"]:  # type: ignore[index]
                assert time.monotonic() < deadline
                time.sleep(0.05)
            after.append(_rss_mib(proxy.pid))
        # The relays did hold their buffers while stuck (else this proves nothing) ...
        assert min(peak) > base + 100, (base, peak)
        # ... and gave them back: the pool keeps at most 8 MiB of spare buffers.
        assert max(after) < base + 40, (base, peak, after)
