"""Combined Log Format lines and the buffered access log."""

from __future__ import annotations

import io
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
    assert '"HEAD / HTTP/1.1" 200 -' in out.getvalue()
    off = AccessLog(None)
    off.write("h", "x", 200, 0, None, None)  # no-op
    off.close()
