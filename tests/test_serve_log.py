"""Combined Log Format lines and the buffered access log."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

from zcopy.serve.log import AccessLog, clf_time, combined_line


def test_combined_line_fields() -> None:
    line = combined_line("10.0.0.1", 784111777, "GET /a HTTP/1.1", 206, 1234, "http://r/", "ua")
    assert line == (
        '10.0.0.1 - - [06/Nov/1994:08:49:37 +0000] "GET /a HTTP/1.1" 206 1234 "http://r/" "ua"'
    )


def test_zero_bytes_is_a_dash_and_quotes_are_escaped() -> None:
    line = combined_line("h", 0, 'GET /"x HTTP/1.1', 304, 0, None, "a\nb\\")
    assert ' 304 - "-" ' in line
    assert '"GET /\\"x HTTP/1.1"' in line
    assert line.endswith('"a\\x0ab\\\\"') and "\n" not in line


def test_clf_time() -> None:
    assert clf_time(784111777) == "[06/Nov/1994:08:49:37 +0000]"


def test_access_log_to_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.write("h", "GET / HTTP/1.1", 200, 5, None, None)
    log.close()
    assert path.read_text().count("\n") == 1 and '"GET / HTTP/1.1" 200 5' in path.read_text()


def test_access_log_stream_and_off() -> None:
    out = io.StringIO()
    log = AccessLog(None, stream=out)
    log.write("h", "HEAD / HTTP/1.1", 200, 0, None, None)
    assert out.getvalue() == ""  # buffered: the server flushes once a second
    log.flush()
    assert '"HEAD / HTTP/1.1" 200 -' in out.getvalue()
    off = AccessLog(None)
    off.write("h", "x", 200, 0, None, None)  # no-op
    off.close()


def test_batches_are_whole_lines_and_one_write_each(tmp_path: Path) -> None:
    """Workers append to one file: a batch is one write() of whole lines, never a split one."""
    path = tmp_path / "access.log"
    logs = [AccessLog(str(path)) for _ in range(4)]

    def hammer(log: AccessLog, n: int) -> None:
        for i in range(3000):
            log.write(f"10.0.0.{n}", f"GET /{'x' * (i % 300)} HTTP/1.1", 200, i, None, "ua")
        log.close()

    threads = [threading.Thread(target=hammer, args=(log, n)) for n, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 * 3000
    assert all(ln.startswith("10.0.0.") and ln.endswith('"-" "ua"') for ln in lines)


def test_a_failing_log_turns_itself_off(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)  # nobody will read: EPIPE
    saved = os.dup(1)
    os.dup2(w, 1)
    try:
        log = AccessLog("-")
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(w)
    import signal

    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        log.write("h", "GET / HTTP/1.1", 200, 1, None, None)
        log.flush()  # no exception: logged once, then off
        assert not log.enabled
        log.write("h", "GET / HTTP/1.1", 200, 1, None, None)
    finally:
        signal.signal(signal.SIGPIPE, old)
        log.close()


def test_a_line_longer_than_a_batch_is_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.write("h", "GET / HTTP/1.1", 200, 1, None, "u" * 100_000)  # over the 64 KiB batch
    log.write("h", "GET /next HTTP/1.1", 200, 1, None, None)
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and lines[0].endswith('"' + "u" * 100_000 + '"')
