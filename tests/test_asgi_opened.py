"""The open files ``FileResponse`` keeps between requests, attacked.

Each test changes the file under the cache the way a deployment or an
attacker would (rename over it, truncate or grow it in place, delete it, swap
a directory, a FIFO or another symlink target in) and checks that the next
answer is the new file's, whole and under its own validator, and that no fd
of an old file stays open. Then the bounds: many files, idle fds, busy fds,
running out of fds, concurrent requests across a replace. In memory first
(``asgi_fake.run_app``, the body read from the very fd each message names),
then over real HTTP under ``zcopy serve --app`` (with strace counting the
opens) and uvicorn.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import resource
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgi_fake import BOTH, Uvicorn, run_app
from asgi_util import start
from conftest import require_strace
from serve_util import wait_for

from zcopy.asgi import FileResponse, StaticFiles
from zcopy.asgi.opened import FILES, MAX_OPEN, OpenFileCache
from zcopy.asgi.types import ZEROCOPYSEND, Message
from zcopy.tools import strace
from zcopy.tools._proc import fd_targets


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    """Every test starts and ends with no kept fds (and proves its own closes)."""
    FILES.clear()
    yield
    FILES.clear()


def open_paths(pid: int | None = None) -> list[str]:
    """What the process's fds point at (``(deleted)`` marks a file unlinked while open)."""
    return fd_targets(os.getpid() if pid is None else pid)


def holding(path: Path, pid: int | None = None) -> list[str]:
    """This process's fds on ``path`` (or on the file it was before a rename or unlink)."""
    return [t for t in open_paths(pid) if t.startswith(str(path))]


def get(path: Path, **headers: str) -> tuple[int, dict[str, str], bytes, Any]:
    """One request through a fresh ``FileResponse``: status, headers, body, the file it sent."""
    got = run_app(FileResponse(path), headers=headers, extensions=BOTH)
    files = [m["file"] for m in got.messages if m["type"] == ZEROCOPYSEND]
    return got.status, got.headers, got.body, files[0] if files else None


def test_the_same_fd_answers_while_the_file_is_the_same(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"0123456789")
    _, h1, b1, file1 = get(f)
    _, h2, b2, file2 = get(f, range="bytes=2-4")
    assert (b1, b2) == (b"0123456789", b"234")
    assert file1 is file2 and not file1.closed  # kept: no open per request
    assert h1["etag"] == h2["etag"] and len(holding(f)) == 1


def test_a_server_that_closes_the_file_it_was_handed_breaks_nothing(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"0123456789")
    first = get(f)[3]
    first.close()  # as a careless server might, after its zerocopysend
    status, _, body, again = get(f, range="bytes=1-2")
    assert (status, body) == (206, b"12") and again is not first and not again.closed


def test_file_replaced_by_rename_is_seen_by_the_next_request(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"old contents")
    _, old_h, old_b, old_file = get(f)
    new = tmp_path / "a.bin.tmp"
    new.write_bytes(b"the new contents")
    os.replace(new, f)
    status, h, body, file = get(f)
    assert (status, body) == (200, b"the new contents") and h["content-length"] == "16"
    assert h["etag"] != old_h["etag"] and old_b == b"old contents"
    assert file is not old_file and old_file.closed  # the old inode's fd let go at once
    assert not [t for t in open_paths() if t.endswith("(deleted)") and str(tmp_path) in t]


def test_file_changed_in_place_gets_a_new_validator_and_its_own_bytes(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"0123456789")
    os.utime(f, ns=(10**18, 10**18))
    _, h1, _, file1 = get(f)
    with open(f, "r+b") as w:
        w.truncate(4)
    os.utime(f, ns=(10**18, 10**18))  # the same mtime: the size alone must tell
    status, h2, body, file2 = get(f)
    assert (status, body, h2["content-length"]) == (200, b"0123", "4")
    assert h2["etag"] != h1["etag"]
    assert run_app(FileResponse(f), headers={"range": "bytes=5-"}, extensions=BOTH).status == 416
    with open(f, "ab") as w:
        w.write(b"456789abcdef")
    _, h3, body, file3 = get(f, range="bytes=10-")
    assert body == b"abcdef" and h3["content-range"] == "bytes 10-15/16"
    assert file1 is file2 is file3  # the same inode: the same fd, read afresh
    # a stale validator from before the change never gets the new bytes as a match
    assert run_app(FileResponse(f), headers={"if-none-match": h1["etag"]}).status == 200
    stale = run_app(
        FileResponse(f), headers={"range": "bytes=0-1", "if-range": h1["etag"]}, extensions=BOTH
    )
    assert stale.status == 200 and stale.body == b"0123456789abcdef"


def test_deleted_file_is_404_and_its_fd_closed(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"here")
    file = get(f)[3]
    f.unlink()
    assert get(f)[0] == 404
    assert file.closed and not holding(f)


def test_directory_swapped_in_is_404(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"a file")
    file = get(f)[3]
    f.unlink()
    f.mkdir()
    assert get(f)[0] == 404
    assert file.closed and len(FILES) == 0


def test_fifo_swapped_in_is_refused_without_hanging(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"a file")
    get(f)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.replace(fifo, f)
    assert get(f)[0] == 403 and len(FILES) == 0


def test_symlink_flipped_serves_the_new_target(tmp_path: Path) -> None:
    (tmp_path / "v1").write_bytes(b"version one")
    (tmp_path / "v2").write_bytes(b"version two!")
    link = tmp_path / "current"
    link.symlink_to("v1")
    _, h1, b1, file1 = get(link)
    flip = tmp_path / "flip"
    flip.symlink_to("v2")
    os.replace(flip, link)  # atomic, as a deployment flips it
    _, h2, b2, file2 = get(link)
    assert (b1, b2) == (b"version one", b"version two!")
    assert h1["etag"] != h2["etag"] and file1.closed and not file2.closed


def test_many_files_stay_within_the_bound_and_close(tmp_path: Path) -> None:
    before = len(open_paths())
    for i in range(3 * MAX_OPEN):
        f = tmp_path / f"f{i}"
        f.write_bytes(b"%d" % i)
        assert get(f)[2] == b"%d" % i
    assert len(FILES) == MAX_OPEN
    assert len(open_paths()) - before <= MAX_OPEN
    FILES.clear()
    assert len(open_paths()) == before


def test_idle_fds_are_closed_by_the_loops_timer(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"x")
    cache = OpenFileCache(idle=0.05)

    async def scenario() -> tuple[bool, bool, int]:
        kept, _ = cache.acquire(str(f))
        cache.release(kept)
        busy, _ = cache.acquire(str(tmp_path / "a"))  # the same file, in use
        await asyncio.sleep(0.3)
        held = busy.file.closed  # in use for longer than idle: never closed under a response
        cache.release(busy)
        await asyncio.sleep(0.3)
        return held, busy.file.closed, len(cache)

    assert asyncio.run(scenario()) == (False, True, 0)
    assert not holding(f)


def test_idle_fds_are_closed_at_the_next_use_without_a_loop(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    cache = OpenFileCache(idle=0.0)
    entry, _ = cache.acquire(str(a))  # no running loop: no timer
    cache.release(entry)
    other, _ = cache.acquire(str(b))
    assert entry.file.closed  # closed by the use of another file
    cache.release(other)
    cache.clear()
    assert other.file.closed


def test_busy_fds_outlive_clear_and_eviction(tmp_path: Path) -> None:
    cache = OpenFileCache(max_open=2)
    paths = [tmp_path / f"f{i}" for i in range(3)]
    for p in paths:
        p.write_bytes(p.name.encode())
    held = [cache.acquire(str(p))[0] for p in paths]  # all busy: the third is not kept
    assert len(cache) == 2 and not any(e.file.closed for e in held)
    cache.release(held[2])
    assert held[2].file.closed  # never kept: closed with its response
    cache.clear()
    assert not held[0].file.closed and not held[1].file.closed  # still sending
    for e in held[:2]:
        cache.release(e)
        assert e.file.closed
    assert not [t for t in open_paths() if t.startswith(str(tmp_path))]


def test_out_of_fds_closes_the_idle_ones_and_retries(tmp_path: Path) -> None:
    cache = OpenFileCache()
    paths = [tmp_path / f"f{i}" for i in range(4)]
    for p in paths:
        p.write_bytes(b"x")
    for p in paths[:3]:
        cache.release(cache.acquire(str(p))[0])
    # The lowest free fd number is above every kept fd (each open took the lowest then):
    # a limit at it makes the next open fail with EMFILE until a kept one is closed.
    lowest_free = os.open(os.devnull, os.O_RDONLY)  # open(2) returns the lowest free number
    os.close(lowest_free)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        with pytest.raises(OSError):
            os.close(os.open(paths[3], os.O_RDONLY))  # the limit holds
        entry, st = cache.acquire(str(paths[3]))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert st.st_size == 1 and len(cache) == 1  # the idle three were closed to make room
    cache.release(entry)
    cache.clear()


def test_concurrent_requests_across_a_replace_each_stay_whole(tmp_path: Path) -> None:
    """Fifty requests in flight on one file while it is replaced: each body is one version."""
    f = tmp_path / "a.bin"
    versions = {0: os.urandom(300_000), 1: os.urandom(200_000)}
    f.write_bytes(versions[0])

    async def one(i: int) -> tuple[str, bytes]:
        head: dict[str, str] = {}
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            await asyncio.sleep(0)  # every message lets the others (and the replace) run
            if message["type"] == "http.response.start":
                head.update((k.decode(), v.decode()) for k, v in message["headers"])
            elif message["type"] == ZEROCOPYSEND:
                fd = message["file"].fileno()
                chunks.append(os.pread(fd, message["count"], message["offset"]))
                await asyncio.sleep(0)
            else:
                chunks.append(message.get("body", b""))

        async def receive() -> Message:
            await asyncio.sleep(3600)
            return {}

        rng = f"bytes={i * 1000}-{i * 1000 + 99_999}".encode()
        scope = {"type": "http", "method": "GET", "headers": [(b"range", rng)],
                 "extensions": BOTH}
        await FileResponse(f)(scope, receive, send)
        return head["etag"], b"".join(chunks)

    async def many() -> list[tuple[str, bytes]]:
        tasks = [asyncio.ensure_future(one(i)) for i in range(25)]
        for _ in range(3):
            await asyncio.sleep(0)  # the first 25 are mid-response, on the old file's fd
        tmp = tmp_path / "next"
        tmp.write_bytes(versions[1])
        os.replace(tmp, f)
        tasks += [asyncio.ensure_future(one(i)) for i in range(25, 50)]
        return await asyncio.gather(*tasks)

    results = asyncio.run(many())
    by_tag: dict[str, set[int]] = {}
    for i, (tag, body) in enumerate(results):
        first = i * 1000
        match = [v for v, data in versions.items() if body == data[first : first + 100_000]]
        assert len(match) == 1, f"request {i}: a body that is no one version's range"
        by_tag.setdefault(tag, set()).add(match[0])
    assert all(len(v) == 1 for v in by_tag.values())  # one validator, one version
    assert [v for s in by_tag.values() for v in s] == [0, 1]  # both were served
    FILES.clear()
    assert not holding(f)


# Over real HTTP ---------------------------------------------------------------------------


def _keepalive_get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes, str]:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read(), resp.getheader("etag") or ""


def test_zcopy_serve_app_sees_replace_delete_and_closes_fds(tmp_path: Path) -> None:
    f = tmp_path / "served.bin"
    f.write_bytes(b"first version")
    with start(tmp_path) as proc:
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=20)
        try:
            s1, b1, e1 = _keepalive_get(conn, "/zfile/served.bin")
            (tmp_path / "next").write_bytes(b"second version!")
            os.replace(tmp_path / "next", f)
            s2, b2, e2 = _keepalive_get(conn, "/zfile/served.bin")
            assert (s1, b1, s2, b2) == (200, b"first version", 200, b"second version!")
            assert e1 != e2
            assert not [t for t in holding(f, proc.pid) if t.endswith("(deleted)")]
            f.unlink()
            assert _keepalive_get(conn, "/zfile/served.bin")[0] == 404
            assert not [t for t in proc.fds() if t.startswith(str(f))]
            (tmp_path / "other.bin").write_bytes(b"o")
            assert _keepalive_get(conn, "/zfile/other.bin")[:2] == (200, b"o")
            assert [t for t in proc.fds() if t.endswith("other.bin")]  # kept...
        finally:
            conn.close()
        wait_for(lambda: not [t for t in proc.fds() if t.endswith("other.bin")],
                 timeout=10, what="the idle fd to close")  # ... and closed when idle


def test_strace_one_open_for_many_ranged_requests(tmp_path: Path) -> None:
    """From outside: ten ranged GETs of one file, one open of it, ten sendfiles, no reads."""
    require_strace()
    data = os.urandom(1 << 20)
    (tmp_path / "kept.bin").write_bytes(data)
    out = tmp_path / "strace.out"
    syscalls = (*strace.DATA_SYSCALLS, "open", "openat")
    proc = start(tmp_path, "asgi_apps:app", prefix=strace.command(str(out), syscalls))
    with proc:
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=20)
        try:
            for k in range(10):
                conn.request("GET", "/zfile/kept.bin", headers={"Range": f"bytes={k}-{k + 999}"})
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (206, data[k : k + 1000])
        finally:
            conn.close()
        assert proc.stop() == 0
    lines = out.read_text().splitlines()
    # -yy names the fd an open returns: "openat(AT_FDCWD, ""..., O_RDONLY|...) = 7</.../kept.bin>"
    opens = [x for x in lines if "open" in x and x.rstrip().endswith("kept.bin>")]
    calls = strace.parse_lines(lines)
    sends = [c for c in calls if c.name == "sendfile"
             and any(w.endswith("kept.bin") for _, w in c.fds)]
    reads = [c for c in calls if c.name in ("read", "pread64", "preadv2")
             and any(w.endswith("kept.bin") for _, w in c.fds)]
    assert len(opens) == 1, opens
    assert len(sends) == 10 and sum(c.ret or 0 for c in sends) == 10_000 and not reads


UVICORN_APP = """
from zcopy.asgi import FileResponse, StaticFiles

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = scope["query_string"].decode()
    await FileResponse(query)(scope, receive, send)
"""


def test_uvicorn_sees_a_replace_on_a_kept_alive_connection(tmp_path: Path) -> None:
    (tmp_path / "uvapp.py").write_text(textwrap.dedent(UVICORN_APP))
    f = tmp_path / "served.bin"
    old, new = os.urandom(70_000), os.urandom(50_000)
    f.write_bytes(old)
    with Uvicorn(tmp_path, "uvapp:app") as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        try:
            assert _keepalive_get(conn, f"/?{f}")[:2] == (200, old), server.output()
            (tmp_path / "next").write_bytes(new)
            os.replace(tmp_path / "next", f)
            assert _keepalive_get(conn, f"/?{f}")[:2] == (200, new)
            assert not [t for t in holding(f, server.proc.pid) if t.endswith("(deleted)")]
        finally:
            conn.close()


def test_out_of_fds_even_after_closing_idle_ones_is_503_with_retry_after(tmp_path: Path) -> None:
    """EMFILE with nothing idle to close: 503 and ``Retry-After`` (a 404 would be cached)."""
    (tmp_path / "a.txt").write_bytes(b"hello")
    loop = asyncio.new_event_loop()  # its own fds first: only the file's open may fail
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    def scope(path: str) -> dict[str, Any]:
        return {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
                "root_path": "", "query_string": b"", "headers": [], "extensions": BOTH}

    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        loop.run_until_complete(FileResponse(tmp_path / "a.txt")(scope("/"), receive, send))
        loop.run_until_complete(StaticFiles(tmp_path)(scope("/a.txt"), receive, send))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        loop.close()
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 2
    for start_message in starts:
        fields = dict(start_message["headers"])
        assert start_message["status"] == 503 and fields.get(b"retry-after") == b"1", fields
    assert not FILES._map  # nothing half-opened was kept


def test_a_child_forked_mid_response_starts_with_an_empty_cache(tmp_path: Path) -> None:
    """The parent's holds never end in the child: it must not inherit entries they pin."""
    held_path, idle_path = tmp_path / "held.txt", tmp_path / "idle.txt"
    held_path.write_bytes(b"one")
    idle_path.write_bytes(b"two")
    idle, _ = FILES.acquire(str(idle_path))
    FILES.release(idle)
    held, _ = FILES.acquire(str(held_path))  # a response in flight when the fork comes
    pid = os.fork()
    if pid == 0:  # the child: report by exit status, never return into pytest
        code = 1
        try:
            fresh = not FILES._map and idle.file.closed and not held.file.closed
            FILES.release(held)  # the response, if it goes on here, lets go: its fd closes
            code = 0 if fresh and held.file.closed and not FILES._map else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not held.file.closed and not idle.file.closed  # the parent's own, untouched
    assert len(FILES) == 2
    FILES.release(held)
