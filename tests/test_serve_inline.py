"""Attacks on ``zcopy serve``'s inline path (plain keep-alive GETs answered from the reader
callback: serve/conn.py ``Conn.serve_now``, serve/server.py ``_answer_now``/``_finish``,
serve/files.py ``Meta.ok_head``).

A real server process, real sockets. Every client checks its whole byte stream: each
response complete, in order, byte-exact against the file as it was, and nothing from
another connection in it (every connection asks for its own file, tagged with its
number). The mixes put inline-eligible requests between the kinds the inline path
declines (Range, HEAD, preconditions, 404, directories, POST with a body, Expect), split
across packets at random places, with many connections at once.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import gzip
import os
import random
import re
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serve_util import ServeProc, get, request_bytes, run_clients, wait_for

from zcopy.serve.server import SMALL_BODY

MID = 200 * 1024  # under the server's CORK_MIN: answered inline, more than a socket buffer takes


@dataclass
class Reply:
    """One response as the wire carried it."""

    status: int
    fields: dict[str, str]
    body: bytes


class Wire:
    """A client socket read as a stream of responses, every read bounded by ``timeout``."""

    def __init__(self, sock: socket.socket, timeout: float = 20) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = bytearray()

    def _more(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self.buf += chunk
        return bool(chunk)

    def _line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            if not self._more():
                raise EOFError(f"stream ended inside a head: {bytes(self.buf[:200])!r}")
        line = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise EOFError(f"stream ended {n - len(self.buf)} bytes short of a body")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def at_eof(self) -> bool:
        """True if the server closed with nothing more to read (a FIN, not a reset)."""
        return not self.buf and not self._more()

    def reply(self, *, head: bool = False) -> Reply:
        """The next final response (interim 1xx skipped), its body by Content-Length."""
        while True:
            if not self.buf and not self._more():
                raise EOFError("stream ended between responses")
            status_line = self._line()
            m = re.fullmatch(rb"HTTP/1\.1 (\d{3}) [^\r\n]*", status_line)
            assert m, f"not a status line: {status_line[:120]!r}"
            fields: dict[str, str] = {}
            while line := self._line():
                name, sep, value = line.decode("latin-1").partition(":")
                assert sep and name.strip() == name, f"bad field line {line!r}"
                key = name.lower()
                assert key not in fields, f"repeated field {name} in one head"
                fields[key] = value.strip()
            status = int(m[1])
            if status >= 200:
                break
            assert status == 100 and not fields, f"unexpected interim {status_line!r}"
        if head or status in (204, 304):
            return Reply(status, fields, b"")
        assert "content-length" in fields, f"{status} without Content-Length: {fields}"
        return Reply(status, fields, self.exactly(int(fields["content-length"])))


def tagged(tag: str, size: int, seed: int) -> bytes:
    """Bytes that say whose they are: ``tag`` repeated, salted, cut to ``size``."""
    rnd = random.Random(seed)
    unit = tag.encode() + bytes(rnd.getrandbits(8) for _ in range(13))
    return (unit * (size // len(unit) + 1))[:size]


def send_in_pieces(sock: socket.socket, data: bytes, rnd: random.Random) -> None:
    """Send ``data`` cut at random places (a head split anywhere), now and then pausing."""
    i = 0
    while i < len(data):
        n = rnd.choice((1, 7, 40, 60, 200, 500, 4000, 65536))
        sock.sendall(data[i : i + n])
        i += n
        if rnd.random() < 0.2:
            time.sleep(0.0005)  # the task catches up and waits: the inline path reads next


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send what the server will take: it may close (and reset) before the end."""
    with contextlib.suppress(OSError):
        sock.sendall(data)


def rst_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends a RST, the abrupt end of a vanished client."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def small_rcvbuf(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before the handshake
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    return s


def socket_fds(proc: ServeProc) -> int:
    return sum(t.startswith("socket:") for t in proc.fds())


def fds_on(proc: ServeProc, name: str) -> int:
    return sum(t.endswith("/" + name) for t in proc.fds())


CONNS = 6


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """Files of every kind the inline path meets: the small ones (c0, c1, edge) go with their
    head in one sendmsg (up to SMALL_BODY), the others by sendfile."""
    for k in range(CONNS):
        (tmp_path / f"c{k}.bin").write_bytes(tagged(f"<conn {k}>", 1000 + 7919 * k, k))
    (tmp_path / "mid.bin").write_bytes(tagged("<mid>", MID, 99))
    (tmp_path / "edge.bin").write_bytes(tagged("<edge>", SMALL_BODY, 98))  # the largest copied
    (tmp_path / "side.txt").write_bytes(b"plain text\n" * 100)
    (tmp_path / "side.txt.gz").write_bytes(gzip.compress(b"plain text\n" * 100))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_bytes(b"x")
    return tmp_path


@dataclass
class Ask:
    """One request of a mix and what its response must be."""

    wire: bytes
    status: int
    body: bytes | None  # None: not checked (an error page, a listing)
    head: bool = False


def mix(site: Path, k: int, etag: str, n: int, rnd: random.Random) -> list[Ask]:
    """``n`` requests for connection ``k``: mostly inline-eligible, the declined kinds between."""
    name = f"/c{k}.bin"
    own = (site / f"c{k}.bin").read_bytes()
    mid = (site / "mid.bin").read_bytes()
    side = (site / "side.txt").read_bytes()
    kinds = [
        (60, Ask(request_bytes(name), 200, own)),
        (4, Ask(request_bytes(name + "?q=1"), 200, own)),
        (5, Ask(request_bytes(name, method="HEAD"), 200, b"", head=True)),
        (4, Ask(request_bytes(name, "Range: bytes=3-12"), 206, own[3:13])),
        (3, Ask(request_bytes(name, 'If-None-Match: "nope"'), 200, own)),
        (3, Ask(request_bytes(name, f"If-None-Match: {etag}"), 304, b"")),
        (3, Ask(request_bytes(f"/missing{k}"), 404, None)),
        (2, Ask(request_bytes("/sub"), 301, None)),
        (2, Ask(request_bytes("/sub/"), 200, None)),
        (3, Ask(request_bytes(name, "Content-Length: 5", method="POST") + b"hello", 405, None)),
        (
            2,
            Ask(
                request_bytes(name, "Expect: 100-continue", "Content-Length: 3", method="POST")
                + b"abc",
                405,
                None,
            ),
        ),
        (3, Ask(request_bytes(name, "Connection: keep-alive"), 200, own)),
        (4, Ask(request_bytes("/mid.bin"), 200, mid)),
        (2, Ask(request_bytes("/side.txt", "Accept-Encoding: gzip"), 200, None)),
        (2, Ask(request_bytes("/side.txt"), 200, side)),
    ]
    weights = [w for w, _ in kinds]
    return rnd.choices([a for _, a in kinds], weights, k=n)


def check_reply(r: Reply, ask: Ask, k: int, i: int) -> None:
    where = f"connection {k}, response {i} to {ask.wire[:40]!r}"
    assert r.status == ask.status, f"{where}: status {r.status}, body {r.body[:80]!r}"
    assert r.fields.get("connection", "") != "close", f"{where}: closed early"
    if ask.body is not None:
        assert r.body == ask.body, f"{where}: {len(r.body)} bytes, not the expected body"
    date = email.utils.parsedate_to_datetime(r.fields["date"]).timestamp()
    assert abs(date - time.time()) < 30, f"{where}: Date {r.fields['date']}"


def flood_one(port: int, site: Path, k: int, n: int, seed: int) -> None:
    """Connection ``k``: ``n`` mixed requests in pipelined batches of 1 to 8, each batch cut
    at random places, and every reply checked. Between batches the server's task waits, so
    each batch meets the inline path first, which answers up to the first request it
    declines and hands the rest to the task."""
    rnd = random.Random(seed)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        w = Wire(s)
        s.sendall(request_bytes(f"/c{k}.bin"))  # the first: the task's, and the ETag
        first = w.reply()
        assert first.body == (site / f"c{k}.bin").read_bytes()
        asks = mix(site, k, first.fields["etag"], n, rnd)
        size = str(len(first.body))
        i = 0
        while i < len(asks):
            batch = asks[i : i + rnd.randint(1, 8)]
            send_in_pieces(s, b"".join(a.wire for a in batch), rnd)
            for ask in batch:
                r = w.reply(head=ask.head)
                check_reply(r, ask, k, i)
                if ask.head:
                    assert r.fields["content-length"] == size
                i += 1
        s.sendall(request_bytes(f"/c{k}.bin", "Connection: close"))
        assert w.reply().body == first.body
        assert w.at_eof(), f"connection {k}: bytes after the last response"


def run_flood(port: int, site: Path, n: int, seed: int) -> None:
    """``flood_one`` on CONNS connections at once."""
    run_clients(
        [functools.partial(flood_one, port, site, k, n, seed * 100 + k) for k in range(CONNS)]
    )


@pytest.mark.parametrize(
    "args", [(), ("--loop", "uvloop"), ("--workers", "2")], ids=["asyncio", "uvloop", "workers2"]
)
def test_pipelined_mixed_floods_come_back_complete_in_order_byte_exact(
    site: Path, args: tuple[str, ...]
) -> None:
    """Six connections at once, each sending 160 mixed requests in pipelined batches cut at
    random places."""
    with ServeProc(site, *args) as proc:
        run_flood(proc.port, site, 160, seed=len(args))
        assert proc.stop() == 0
    assert "internal error" not in proc.stderr()


@pytest.mark.parametrize(
    ("loop", "small"), [("asyncio", "0"), ("uvloop", "0"), ("asyncio", str(SMALL_BODY))]
)
def test_a_client_that_stops_reading_then_resumes_gets_every_byte_in_order(
    site: Path, loop: str, small: str
) -> None:
    """Pipelined 200 KiB answers fill both socket buffers mid-answer; the client sleeps, then
    reads: each rest follows its head, and the next answer never cuts into it; the access
    log counts every body whole. With small bodies on, the small file's answers are head and
    body in one sendmsg, so a rest may be a tail of both."""
    own = (site / "c0.bin").read_bytes()
    assert len(own) <= SMALL_BODY
    mid = (site / "mid.bin").read_bytes()
    asks = [
        (request_bytes("/mid.bin"), 200, mid, False),
        (request_bytes("/c0.bin"), 200, own, False),
        (request_bytes("/c0.bin", "Range: bytes=0-0"), 206, own[:1], False),
        (request_bytes("/mid.bin", method="HEAD"), 200, b"", True),
        (request_bytes("/c0.bin", method="HEAD"), 200, b"", True),
        (request_bytes("/mid.bin"), 200, mid, False),
    ]
    with ServeProc(site, "--loop", loop, "--small-body", small) as proc:
        for round_ in range(2):
            with small_rcvbuf(proc.port) as s:
                w = Wire(s)
                for path in ("/mid.bin", "/c0.bin"):  # known targets from here on
                    s.sendall(request_bytes(path))
                    w.reply()
                plan = asks * 5
                for wire, *_ in plan:
                    s.sendall(wire)  # one at a time: each may arrive while the task waits
                    time.sleep(0.002)
                time.sleep(0.3 + 0.1 * round_)  # full socket: rests wait for the task
                for i, (_, status, body, head) in enumerate(plan):
                    r = w.reply(head=head)
                    assert (r.status, r.body) == (status, body), f"round {round_}, reply {i}"
                    if head:
                        assert int(r.fields["content-length"]) in (len(mid), len(own))
        assert proc.stop() == 0
    gets = [line for line in proc.access_log().splitlines() if '"GET /mid.bin' in line]
    assert len(gets) == 2 * (1 + 2 * 5)
    assert all(f" 200 {MID} " in line for line in gets), [g for g in gets if str(MID) not in g]
    owns = [x for x in proc.access_log().splitlines() if '"GET /c0.bin HTTP/1.1" 200' in x]
    assert len(owns) == 2 * (1 + 5)
    assert all(f'" 200 {len(own)} ' in line for line in owns), owns


@pytest.mark.parametrize("small", ["0", str(SMALL_BODY)], ids=["sendfile", "small-bodies"])
def test_clients_that_reset_mid_answer_leave_no_fd_behind(site: Path, small: str) -> None:
    """Clients reset (RST) while inline answers are half sent; the server's /proc/PID/fd
    returns to what it was: no socket, no file held (c0 by sendfile, or with its head)."""
    with ServeProc(site, "--send-timeout", "5", "--small-body", small) as proc:
        get(proc.port, "/c0.bin")
        wait_for(lambda: fds_on(proc, "c0.bin") == 0, what="the warm-up file closed")
        sockets_before = socket_fds(proc)
        rnd = random.Random(7)
        for _ in range(6):
            s = small_rcvbuf(proc.port)
            w = Wire(s)
            s.sendall(request_bytes("/mid.bin"))
            assert w.reply().status == 200
            for _ in range(8):
                s.sendall(request_bytes("/mid.bin") + request_bytes("/c0.bin"))
                time.sleep(0.001)
            w.exactly(rnd.randrange(1, 3 * MID))  # partway into some answer
            rst_close(s)
        assert get(proc.port, "/c0.bin").status == 200  # the server still answers
        wait_for(
            lambda: (
                socket_fds(proc) == sockets_before
                and fds_on(proc, "mid.bin") == 0
                and fds_on(proc, "c0.bin") == 0
            ),
            what=f"fds back to the listener only (now {proc.fds()})",
        )
        assert proc.stop() == 0


def _versions(path: Path) -> Iterator[tuple[str, bytes]]:
    """Changes to a served file, each with the bytes it leaves: grow, shrink, rewrite, touch."""
    data = path.read_bytes()
    grown = data + tagged("<grown>", 3000, 1)
    with open(path, "ab") as f:
        f.write(grown[len(data) :])
    yield "grown in place", grown
    with open(path, "r+b") as f:
        f.truncate(1200)
    yield "truncated in place", grown[:1200]
    same_size = tagged("<rewritten>", 1200, 2)
    with open(path, "r+b") as f:
        f.write(same_size)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))  # mtime surely moved
    yield "rewritten, same size", same_size
    os.utime(path, ns=(time.time_ns(), 1_000_000_000))
    yield "only its mtime changed", same_size


def test_a_file_changed_between_two_requests_gets_a_fresh_head(site: Path) -> None:
    """On one connection, the file changes between requests: each answer carries the file as
    it is now, its length and validators, never the cached head of the old one."""
    path = site / "c2.bin"
    with ServeProc(site) as proc, proc.connect() as s:
        w = Wire(s)
        for _ in range(3):  # known target, open fd, cached head: inline from the second on
            s.sendall(request_bytes("/c2.bin"))
            before = w.reply()
        for what, now in _versions(path):
            time.sleep(0.01)
            s.sendall(request_bytes("/c2.bin") + request_bytes("/c2.bin", method="HEAD"))
            r, h = w.reply(), w.reply(head=True)
            assert r.body == now, f"{what}: {len(r.body)} bytes, file has {len(now)}"
            st = os.stat(path)
            for reply in (r, h):
                assert reply.fields["content-length"] == str(len(now)), what
                assert reply.fields["last-modified"] == email.utils.formatdate(
                    int(st.st_mtime), usegmt=True
                ), what
                assert reply.fields["etag"] != before.fields["etag"], f"{what}: stale ETag"
            before = r


def test_a_file_renamed_over_is_served_whole_old_or_whole_new(site: Path) -> None:
    """A file replaced by rename while a connection asks for it again and again: every answer
    is one version, whole, with that version's length; after the cache's second, the new."""
    path = site / "c3.bin"
    old = path.read_bytes()
    with ServeProc(site) as proc, proc.connect() as s:
        w = Wire(s)
        for _ in range(3):
            s.sendall(request_bytes("/c3.bin"))
            assert w.reply().body == old
        versions = {old}
        for v in range(3):
            new = tagged(f"<version {v}>", 900 + 2111 * v, v)
            tmp = site / f".c3.{v}"
            tmp.write_bytes(new)
            os.rename(tmp, path)
            versions.add(new)
            for _ in range(5):
                s.sendall(request_bytes("/c3.bin"))
                r = w.reply()
                assert r.body in versions and int(r.fields["content-length"]) == len(r.body)
                time.sleep(0.02)
        time.sleep(1.1)  # past the open-file cache's second
        s.sendall(request_bytes("/c3.bin") * 2)
        assert w.reply().body == new and w.reply().body == new


def test_racing_writers_never_pad_or_leak_into_the_next_answer(site: Path) -> None:
    """One thread rewrites the file in place (shrinking, growing) and renames new ones over it
    while a connection pipelines GETs: a body is whole, or short and then the connection
    ends; never followed by bytes that are not the next head, never a foreign byte. (A 0
    may appear: an in-place truncate zeroes page-cache bytes that answers already queued
    refer to, see the shrinking test below; the file's own bytes are never 0.)"""
    path = site / "c4.bin"
    stop = threading.Event()
    alphabet = set(range(ord("a"), ord("a") + 8)) | {0}

    def mutate() -> None:
        rnd = random.Random(3)
        while not stop.is_set():
            v = rnd.randrange(8)
            body = bytes([ord("a") + v]) * rnd.randrange(1, 120_000)
            if rnd.random() < 0.2:
                tmp = site / ".c4.tmp"
                tmp.write_bytes(body)
                os.rename(tmp, path)
            else:
                with open(path, "r+b") as f:
                    f.write(body)
                    f.truncate(len(body))
            time.sleep(rnd.choice((0, 0.0005, 0.002)))

    path.write_bytes(b"a" * 5000)
    mutator = threading.Thread(target=mutate)
    answers = shorts = 0
    with ServeProc(site) as proc:
        mutator.start()
        try:
            deadline = time.monotonic() + 0.8
            while time.monotonic() < deadline:
                with proc.connect() as s:
                    w = Wire(s)
                    s.sendall(request_bytes("/c4.bin") * 40)
                    for _ in range(40):
                        r = w.reply(head=True)  # the head only: the body may be short
                        assert r.status == 200, r
                        n = int(r.fields["content-length"])
                        got = bytes(w.buf[:n])
                        del w.buf[: len(got)]
                        while len(got) < n and (chunk := s.recv(n - len(got))):
                            got += chunk
                        assert set(got) <= alphabet, "foreign bytes in a body"
                        answers += 1
                        if len(got) < n:  # shrank mid-send: the server must end the connection
                            shorts += 1
                            assert w.at_eof(), "bytes after a short body"
                            break
        finally:
            stop.set()
            mutator.join(10)
        assert answers > 10
        assert "internal error" not in proc.stderr()


def test_a_file_shrinking_under_a_half_sent_inline_answer_ends_the_connection(
    site: Path,
) -> None:
    """Forty pipelined 200 KiB answers (8 MB: more than both socket buffers hold) are under
    way when the file is truncated: the answers already queued arrive whole, one ends
    short, and the stream ends there; no answer is padded, none has foreign bytes.

    Bytes sendfile queued before the truncate are references to the page cache, and the
    kernel zeroes the cut part of the (large) page that holds the new end, in answers
    already queued too (128 KiB of zeros seen here: a zero-copy server's lot, nginx's as
    well). So a byte past the new end may be 0; any other byte must be the file's."""
    path = site / "mid.bin"
    whole = tagged("<mid>", MID, 99)
    for keep in (5000, 0):
        path.write_bytes(whole)
        with ServeProc(site) as proc, small_rcvbuf(proc.port) as s:
            w = Wire(s)
            s.sendall(request_bytes("/mid.bin"))
            assert w.reply().body == whole
            time.sleep(0.01)
            for _ in range(40):  # each arrives while the task waits: answered inline
                s.sendall(request_bytes("/mid.bin"))
                time.sleep(0.001)
            time.sleep(0.2)
            with open(path, "r+b") as f:
                f.truncate(keep)
            whole_ones = 0
            with contextlib.suppress(ConnectionResetError):  # unread requests at the close
                while True:
                    r = w.reply(head=True)
                    assert r.status == 200 and r.fields["content-length"] == str(MID)
                    got = bytearray(w.buf[:MID])
                    del w.buf[:MID]
                    while len(got) < MID and (chunk := s.recv(MID - len(got))):
                        got += chunk
                    assert all(
                        b == whole[i] or (b == 0 and i >= keep) for i, b in enumerate(got)
                    ), "foreign bytes in a body"
                    if len(got) < MID:
                        assert w.at_eof(), "bytes after a short body"
                        break
                    whole_ones += 1
            assert whole_ones < 40, f"truncated to {keep}: every answer came whole"
            wait_for(lambda: "shrank" in proc.stderr(), what="the shrink reported")


def test_the_date_stays_current_across_second_boundaries(site: Path) -> None:
    """The cached head is rebuilt when the second changes: over 1.1 s of repeated
    inline answers on one connection, every Date is the second it was sent in."""
    with ServeProc(site) as proc, proc.connect() as s:
        w = Wire(s)
        seen = set()
        end = time.time() + 1.1  # whatever the phase: two seconds, a boundary between
        while time.time() < end:
            before = int(time.time())
            s.sendall(request_bytes("/c0.bin"))
            r = w.reply()
            after = int(time.time())
            date = int(email.utils.parsedate_to_datetime(r.fields["date"]).timestamp())
            assert before <= date <= after, (before, r.fields["date"], after)
            seen.add(date)
            time.sleep(0.05)
        assert len(seen) >= 2


def test_max_requests_and_fairness_under_many_pipelining_connections(site: Path) -> None:
    """Twelve connections pipeline GETs of their own file at once, past --max-requests: each
    gets exactly that many answers, all its own, the last with close, then EOF; and a client
    that comes mid-flood asks five times, one after the other, and is through before any
    flooding connection is (the turns the inline path gives up reach it)."""
    limit, conns = 1000, 12
    for k in range(CONNS, conns):
        (site / f"c{k}.bin").write_bytes(tagged(f"<conn {k}>", 500 + 331 * k, k))
    errors: list[str] = []
    done: dict[int, float] = {}
    ready = threading.Barrier(conns + 1)

    def client(k: int, port: int) -> None:
        own = (site / f"c{k}.bin").read_bytes()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                w = Wire(s, timeout=30)
                s.sendall(request_bytes(f"/c{k}.bin"))
                assert w.reply().body == own
                ready.wait(20)
                flood = request_bytes(f"/c{k}.bin") * (limit + 50)
                sender = threading.Thread(target=send_quietly, args=(s, flood))
                sender.start()
                for i in range(limit - 1):
                    r = w.reply()
                    assert r.body == own, f"connection {k} reply {i}: not its own bytes"
                    assert (r.fields.get("connection") == "close") == (i == limit - 2), i
                done[k] = time.monotonic()
                assert w.at_eof()
                sender.join(20)
        except BaseException as exc:
            errors.append(f"connection {k}: {exc!r}")

    with ServeProc(site, "--max-requests", str(limit), "--linger-timeout", "1") as proc:
        threads = [threading.Thread(target=client, args=(k, proc.port)) for k in range(conns)]
        for t in threads:
            t.start()
        ready.wait(20)
        time.sleep(0.01)
        with proc.connect() as victim:
            w = Wire(victim)
            for _ in range(5):
                victim.sendall(request_bytes("/side.txt"))
                assert w.reply().status == 200
            victim_done = time.monotonic()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(done) == conns
        assert victim_done < min(done.values()), "the victim waited for a flood to end"
        assert proc.stop() == 0


def batches_until_closed(
    port: int, site: Path, k: int, seed: int, started: threading.Barrier
) -> int:
    """Connection ``k`` sends mixed batches and checks every reply until the server closes;
    returns how many replies came (all whole)."""
    rnd = random.Random(seed)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        w = Wire(s)
        s.sendall(request_bytes(f"/c{k}.bin"))
        asks = mix(site, k, w.reply().fields["etag"], 5000, rnd)
        started.wait(20)
        n = 0
        while True:
            batch = asks[n : n + rnd.randint(1, 8)]
            with contextlib.suppress(OSError):  # the server may be gone
                send_in_pieces(s, b"".join(a.wire for a in batch), rnd)
            for ask in batch:
                if w.at_eof():
                    return n
                r = w.reply(head=ask.head)
                assert r.status == ask.status, (n, r.status, ask.wire[:40])
                if ask.body is not None:
                    assert r.body == ask.body, f"reply {n}"
                n += 1
                if r.fields.get("connection") == "close":
                    assert w.at_eof(), "bytes after Connection: close"
                    return n


def sigterm_mid_flood(site: Path, round_: int, args: tuple[str, ...]) -> None:
    with ServeProc(site, *args) as proc:
        errors: list[str] = []
        counts: list[int] = []
        started = threading.Barrier(CONNS + 1)

        def client(k: int) -> None:
            try:
                counts.append(batches_until_closed(proc.port, site, k, round_ * 10 + k, started))
            except BaseException as exc:
                errors.append(f"connection {k}: {exc!r}")

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CONNS)]
        for t in threads:
            t.start()
        started.wait(20)
        time.sleep(0.1 + 0.1 * round_)
        os.kill(proc.pid, signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert proc.proc.wait(30) == 0
        assert len(counts) == CONNS and all(0 < n < 5000 for n in counts), counts
        assert "internal error" not in proc.stderr()


@pytest.mark.parametrize(
    "args", [(), ("--workers", "2", "--loop", "uvloop")], ids=["asyncio", "uvloop-workers2"]
)
def test_sigterm_during_a_pipelined_flood_completes_or_closes_cleanly(
    site: Path, args: tuple[str, ...]
) -> None:
    """SIGTERM while six connections send mixed batches: each stream is whole responses,
    then EOF (never a cut body, never a reset), and the server exits 0."""
    for round_ in range(2 if not args else 1):
        sigterm_mid_flood(site, round_, args)


def test_inline_heads_are_the_tasks_heads_to_the_byte(site: Path) -> None:
    """200s and 304s (If-None-Match, weak or *, If-Modified-Since, HEAD, with a Range) from
    the inline path carry exactly the fields the task's answer to the same request does."""
    with ServeProc(site) as proc:
        first = get(proc.port, "/c5.bin")
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        variants = [
            ("GET", ()),
            ("HEAD", ()),
            ("GET", (f"If-None-Match: {etag}",)),
            ("GET", (f"If-None-Match: W/{etag}, {etag}",)),
            ("GET", ("If-None-Match: *",)),
            ("HEAD", (f"If-None-Match: {etag}",)),
            ("GET", (f"If-Modified-Since: {modified}",)),
            ("GET", (f"If-None-Match: {etag}", "Range: bytes=0-3")),
            ("GET", (f"If-None-Match: {etag}", f"If-Modified-Since: {modified}")),
        ]
        with proc.connect() as s:
            w = Wire(s)
            for method, extra in variants:
                # The task's answer: Connection: close declines the inline path.
                fields = dict(x.split(": ", 1) for x in extra)
                task = get(proc.port, "/c5.bin", {**fields, "Connection": "close"}, method)
                time.sleep(0.02)  # the keep-alive connection's task waits: inline next
                s.sendall(request_bytes("/c5.bin", *extra, method=method))
                inline = w.reply(head=method == "HEAD" or task.status == 304)
                assert inline.status == task.status, (method, extra)
                task_fields = {
                    k: v for k, v in task.headers.items() if k not in ("date", "connection")
                }
                assert {k: v for k, v in inline.fields.items() if k != "date"} == task_fields
                assert inline.body == task.body
        wait_for(lambda: proc.access_log().count('" 304 - ') == 2 * 7, what="the 304s logged")


def test_deadlines_still_run_after_inline_answers(site: Path) -> None:
    """After inline answers, an idle connection gets --keepalive-timeout and a trickled head
    --header-timeout from its first byte: bytes never buy time."""
    with ServeProc(site, "--header-timeout", "1", "--keepalive-timeout", "1") as proc:
        idle, trickler = proc.connect(), proc.connect()
        with idle, trickler:
            for s in (idle, trickler):
                w = Wire(s)
                for _ in range(3):
                    time.sleep(0.02)
                    s.sendall(request_bytes("/c0.bin"))
                    assert w.reply().status == 200
            began = time.monotonic()
            closed_at: float | None = None
            for byte in request_bytes("/c0.bin")[:-2]:  # never the last empty line
                try:
                    trickler.sendall(bytes([byte]))
                except OSError:
                    closed_at = time.monotonic()
                    break
                time.sleep(0.1)
                if _closed(trickler):
                    closed_at = time.monotonic()
                    break
            assert closed_at is not None, "a trickled head kept its connection open"
            assert closed_at - began < 3.5, f"trickler closed after {closed_at - began:.1f} s"
            idle.settimeout(5)
            assert idle.recv(1) == b"", "an idle connection outlived its keep-alive timeout"
            assert time.monotonic() - began < 5


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(10)


def test_expect_100_continue_after_inline_answers_comes_in_order(site: Path) -> None:
    """A GET with Expect: 100-continue and its body held back, pipelined behind a request the
    inline path answers: the inline answer, then 100 Continue, and only after the body
    the final answer."""
    with ServeProc(site) as proc, proc.connect() as s:
        w = Wire(s)
        etag = get(proc.port, "/c5.bin").headers["etag"]
        waits = request_bytes("/c5.bin", "Expect: 100-continue", "Content-Length: 3")
        for before, status in (
            (request_bytes("/c5.bin", f"If-None-Match: {etag}"), 304),
            (request_bytes("/c5.bin"), 200),
        ):
            time.sleep(0.02)
            s.sendall(before + waits)
            assert w.reply(head=status == 304).status == status
            assert w.exactly(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
            time.sleep(0.05)
            readable, _, _ = select.select([s], [], [], 0)
            assert not w.buf and not readable, "an answer (or a close) before the body came"
            s.sendall(b"abc")
            r = w.reply()
            assert r.status == 200 and r.body == (site / "c5.bin").read_bytes()


def test_sigterm_with_an_inline_answer_half_sent_finishes_it(site: Path) -> None:
    """A client that does not read has an inline answer half sent (the task holds its rest)
    when SIGTERM comes: that answer completes, whole, before the close; exit 0."""
    mid = (site / "mid.bin").read_bytes()
    with ServeProc(site) as proc, small_rcvbuf(proc.port) as s:
        w = Wire(s)
        s.sendall(request_bytes("/mid.bin"))
        assert w.reply().body == mid
        for _ in range(40):  # 8 MB, more than both socket buffers: one answer is left half sent
            time.sleep(0.002)
            s.sendall(request_bytes("/mid.bin"))
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.2)
        whole = 0
        while not w.at_eof():
            assert w.reply().body == mid, "a cut body"
            whole += 1
        assert 1 <= whole < 40, f"{whole} answers: none was in flight at SIGTERM"
        s.close()  # the server lingers until the client closes
        assert proc.proc.wait(30) == 0


def test_a_swapped_symlink_never_serves_outside_the_root(
    site: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``link.bin`` flips between a file in the root and one outside it while a connection
    asks for it over and over (inline, from the open-file cache, and by the task when the
    cache expires): never a byte of the outside file."""
    outside = tmp_path_factory.mktemp("outside") / "secret.bin"
    outside.write_bytes(b"SECRET" * 1000)
    inside = (site / "c0.bin").read_bytes()
    link = site / "link.bin"
    link.symlink_to(site / "c0.bin")
    stop = threading.Event()

    def flip() -> None:
        targets = [outside, site / "c0.bin"]
        i = 0
        while not stop.is_set():
            tmp = site / ".link.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(targets[i % 2])
            os.rename(tmp, link)
            i += 1
            time.sleep(0.003)

    with ServeProc(site) as proc, proc.connect() as s:
        w = Wire(s)
        flipper = threading.Thread(target=flip)
        flipper.start()
        statuses = set()
        try:
            end = time.monotonic() + 1.2  # the open-file cache expires at least once
            while time.monotonic() < end:
                s.sendall(request_bytes("/link.bin") * 3)
                for _ in range(3):
                    r = w.reply()
                    assert b"SECRET" not in r.body
                    assert (r.status, r.body) == (200, inside) or r.status == 404, r.status
                    statuses.add(r.status)
                time.sleep(0.01)
        finally:
            stop.set()
            flipper.join(10)
        assert 200 in statuses
        tmp = site / ".link.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(outside)
        os.rename(tmp, link)
        time.sleep(1.1)  # past the open-file cache's second: the name is opened again
        for _ in range(3):
            time.sleep(0.02)
            s.sendall(request_bytes("/link.bin"))
            assert w.reply().status == 404


def test_open_file_cache_churn_keeps_answers_right_and_fds_bounded(tmp_path: Path) -> None:
    """600 files (the open-file cache holds 512) asked for in pipelined batches on three
    connections at once, twice over: handles are evicted under the inline path's feet; every
    answer is its file's, and once the cache's second is over no file stays open."""
    files = {f"/f{i}.bin": tagged(f"<file {i}>", 100 + 37 * i, i) for i in range(600)}
    for name, body in files.items():
        (tmp_path / name[1:]).write_bytes(body)
    errors: list[str] = []

    def client(port: int, k: int) -> None:
        names = list(files)
        random.Random(k).shuffle(names)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                w = Wire(s)
                for i in range(0, 2 * len(names), 20):
                    batch = (names * 2)[i : i + 20]
                    s.sendall(b"".join(request_bytes(n) for n in batch))
                    for n in batch:
                        assert w.reply().body == files[n], f"connection {k}: {n}"
        except BaseException as exc:
            errors.append(repr(exc))

    with ServeProc(tmp_path, "--max-requests", "5000") as proc:
        threads = [threading.Thread(target=client, args=(proc.port, k)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert sum(t.endswith(".bin") for t in proc.fds()) <= 512
        wait_for(lambda: not any(t.endswith(".bin") for t in proc.fds()), what="every file closed")


def test_a_half_closed_client_gets_every_pipelined_answer(site: Path) -> None:
    """Requests, then FIN at once (SHUT_WR), from a client that reads slowly: the inline
    answers, the rest the task finishes, and the ones after it all arrive before the close."""
    mid, own = (site / "mid.bin").read_bytes(), (site / "c1.bin").read_bytes()
    with ServeProc(site) as proc:
        get(proc.port, "/mid.bin")
        get(proc.port, "/c1.bin")  # known targets: the first answers are inline
        for _ in range(3):
            with small_rcvbuf(proc.port) as s:
                w = Wire(s)
                s.sendall((request_bytes("/mid.bin") + request_bytes("/c1.bin")) * 15)
                s.shutdown(socket.SHUT_WR)
                time.sleep(0.2)
                for _ in range(15):
                    assert w.reply().body == mid and w.reply().body == own
                assert w.at_eof()


# Small bodies: head and body in one sendmsg (serve/server.py ``_answer_small``) ---------


def test_floods_with_small_bodies_off_come_back_complete_in_order_byte_exact(
    site: Path,
) -> None:
    """The mixed pipelined floods again with ``--small-body 0``: every inline body by sendfile
    (the default mixes small bodies in one sendmsg with the sendfile answers of larger ones)."""
    sizes = [(site / f"c{k}.bin").stat().st_size for k in range(CONNS)]
    assert min(sizes) <= SMALL_BODY < max(sizes)  # both kinds in every default mix
    with ServeProc(site, "--small-body", "0") as proc:
        run_flood(proc.port, site, 160, seed=11)
        assert proc.stop() == 0
    assert "internal error" not in proc.stderr()


def test_a_rewrite_in_place_that_keeps_size_and_mtime_is_never_served_stale(
    site: Path,
) -> None:
    """A writer rewrites a small file in place, same size, and puts the old mtime back (so
    size, mtime and ETag all say "unchanged"): every answer after the write carries the new
    bytes, as sendfile's would (the body is read at each request, never kept)."""
    path = site / "c0.bin"
    st = path.stat()
    assert st.st_size <= SMALL_BODY
    with ServeProc(site) as proc, proc.connect() as s:
        w = Wire(s)
        for v in range(12):
            for _ in range(3):  # the second and third are inline, head and body in one call
                s.sendall(request_bytes("/c0.bin"))
                current = w.reply()
            new = tagged(f"<v{v}>", st.st_size, 100 + v)
            assert current.body != new
            with open(path, "r+b") as f:
                f.write(new)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            assert os.stat(path).st_mtime_ns == st.st_mtime_ns
            s.sendall(request_bytes("/c0.bin"))
            r = w.reply()
            assert r.body == new, f"rewrite {v}: the old bytes were served"
            assert r.fields["etag"] == current.fields["etag"]  # what the validators cannot see


def test_a_small_file_rewritten_between_requests_is_sent_as_it_is_now(site: Path) -> None:
    """Rewritten (truncated and written) before every pair of requests: each answer is the
    file as it is at that request."""
    path = site / "c0.bin"
    with ServeProc(site) as proc, proc.connect() as s:
        w = Wire(s)
        for v in range(40):
            data = tagged(f"<fresh {v}>", 500 + 37 * v, v)
            path.write_bytes(data)  # truncate and write: size, mtime and ctime move
            s.sendall(request_bytes("/c0.bin") * 2)
            assert w.reply().body == data and w.reply().body == data, f"version {v}"


def test_a_small_answer_cut_short_by_a_full_socket_is_finished_and_logged_whole(
    site: Path,
) -> None:
    """Requests for a small file, one at a time, to a client that does not read: the inline
    answers (head and body in one sendmsg) fill the socket until one goes out in part; its
    rest is the task's, then the client reads every answer, whole and in order, and the
    access log counts every body whole."""
    own = (site / "edge.bin").read_bytes()
    n = 500  # ~8 MB of answers: more than the receive buffer and the largest send buffer hold
    with ServeProc(site) as proc:
        with small_rcvbuf(proc.port) as s:
            w = Wire(s)
            s.sendall(request_bytes("/edge.bin"))
            assert w.reply().body == own  # the target is known from here on
            for _ in range(n):
                s.sendall(request_bytes("/edge.bin"))
                time.sleep(0.002)  # each arrives while the task waits: inline
            time.sleep(0.3)
            for i in range(n):
                assert w.reply().body == own, f"answer {i}"
        assert proc.stop() == 0
    lines = [x for x in proc.access_log().splitlines() if '"GET /edge.bin HTTP/1.1" 200' in x]
    assert len(lines) == n + 1
    whole = f'" 200 {len(own)} '
    assert all(whole in x for x in lines), [x for x in lines if whole not in x]
