"""Proof from outside (strace): file bodies under ``zcopy serve --app`` go by sendfile, unread.

Starlette's own ``FileResponse`` (whole file, through ``http.response.pathsend``)
and ``zcopy.asgi.FileResponse`` (a single range and every part of a multipart
body, through ``http.response.zerocopysend``): the server process makes
sendfile calls on the file, from the right offsets, and never reads it.
"""

from __future__ import annotations

import http.client
import os
import re
from pathlib import Path

from asgi_util import request, start
from conftest import require_strace

from zcopy.tools import strace

READS = ("read", "readv", "pread64", "preadv", "preadv2")
SIZE = 2 << 20


def test_file_bodies_are_sendfile_with_zero_reads(tmp_path: Path) -> None:
    require_strace()
    names = ("whole.bin", "static.bin", "ranged.bin", "multi.bin")
    for name in names:
        (tmp_path / name).write_bytes(os.urandom(SIZE))
    out = tmp_path / "strace.out"
    proc = start(tmp_path, "asgi_apps:app", prefix=strace.command(str(out)))
    with proc:
        whole = request(proc.port, "GET", "/file/whole.bin")[1]
        static = request(proc.port, "GET", "/static/static.bin")[1]
        ranged = request(proc.port, "GET", "/zfile/ranged.bin", headers={"Range": "bytes=300000-"})
        multi = request(
            proc.port, "GET", "/zfile/multi.bin", headers={"Range": "bytes=10-19,1500000-1600000"}
        )
        assert proc.stop() == 0
    assert whole == (tmp_path / "whole.bin").read_bytes()
    assert static == (tmp_path / "static.bin").read_bytes()
    assert ranged[0].status == 206
    assert ranged[1] == (tmp_path / "ranged.bin").read_bytes()[300000:]
    assert multi[0].status == 206

    calls = strace.parse_lines(out.read_text().splitlines())

    def on(name: str, path: str) -> list[strace.Call]:
        return [c for c in calls if c.name == name and any(w.endswith(path) for _, w in c.fds)]

    def offsets(path: str) -> list[int]:
        found = [re.search(r"\[(\d+)\] =>", c.args) for c in on("sendfile", path)]
        return [int(m[1]) for m in found if m]

    for name in names:
        sent = on("sendfile", name)
        assert sent and all(c.ok for c in sent), f"no sendfile of {name}"
        for reader in READS:
            assert not on(reader, name), f"{reader} of {name}: the body went through user space"
    assert sum(c.ret or 0 for c in on("sendfile", "whole.bin")) == SIZE
    assert sum(c.ret or 0 for c in on("sendfile", "static.bin")) == SIZE
    assert offsets("ranged.bin")[0] == 300000
    assert sum(c.ret or 0 for c in on("sendfile", "ranged.bin")) == SIZE - 300000
    # every part of the multipart body: its own sendfile from its own offset
    assert offsets("multi.bin")[:2] == [10, 1500000]
    assert sum(c.ret or 0 for c in on("sendfile", "multi.bin")) == 10 + 100001


def test_keep_alive_requests_leave_no_stale_readiness(tmp_path: Path) -> None:
    """Each request on a kept-alive connection is received in the reader callback, so the
    poll after it never reports that input again: no spurious wake-up (a recv that finds
    nothing) and no epoll_ctl pair per request (measured before the fix, under strace: 238
    epoll_ctl and 404 failed recvs for 500 ranged requests; then one failed recv per request,
    the task's own first try; now a constant few)."""
    require_strace()
    requests = 200
    (tmp_path / "seek.bin").write_bytes(os.urandom(SIZE))
    out = tmp_path / "strace.out"
    syscalls = ("epoll_ctl", "recvfrom", "sendfile")
    proc = start(tmp_path, "asgi_apps:app", prefix=strace.command(str(out), syscalls))
    with proc:
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=20)
        try:
            for i in range(requests):
                first = i * 4099 % (SIZE // 2)
                conn.request("GET", "/zfile/seek.bin", headers={"Range": f"bytes={first}-"})
                resp = conn.getresponse()
                assert resp.status == 206 and len(resp.read()) == SIZE - first
        finally:
            conn.close()
        assert proc.stop() == 0
    calls = strace.parse_lines(out.read_text().splitlines())

    def on_tcp(name: str) -> list[strace.Call]:
        return [c for c in calls if c.name == name and any("TCP" in w for _, w in c.fds)]

    assert len([c for c in on_tcp("sendfile") if c.ok]) >= requests  # the requests were seen
    assert len(on_tcp("epoll_ctl")) <= 8, "epoll_ctl per request: a stale readiness"
    # Nor a recv on the way back to waiting while the reader is still registered: the loop
    # says when input comes (there was one per request, finding nothing, before that).
    empty = [c for c in on_tcp("recvfrom") if c.error == "EAGAIN"]
    assert len(empty) <= 8, f"{len(empty)} recvs found nothing: spurious wake-ups"
