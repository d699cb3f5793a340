"""The report in words."""

from __future__ import annotations

import json

from zcopy.tools.flows import Event, analyse
from zcopy.tools.report import as_dict, render_json, render_text, telltale

SOCK = "TCP:[127.0.0.1:8000->127.0.0.1:5000]"


def copy_loop(chunks: int, chunk: int = 32 << 10) -> list[Event]:
    """A read(file)/write(socket) loop: the user-space route."""
    out = []
    for _ in range(chunks):
        out.append(Event(1, "read", "/srv/big.bin", None, "file", "memory", chunk))
        out.append(Event(1, "write", None, SOCK, "memory", "socket", chunk))
    return out


def test_user_space_says_so_in_words() -> None:
    assert telltale(analyse(copy_loop(80))) == (
        "2.5 MiB went file -> socket through 160 read/write calls of 32.0 KiB: "
        "the fast path is off (0% of payload bytes by zero-copy calls)"
    )


def test_mixed_names_both_flows() -> None:
    events = [Event(1, "sendfile", "/f", SOCK, "file", "socket", 2 << 20, 2), *copy_loop(64)]
    assert telltale(analyse(events)) == (
        "50.0% of payload bytes moved by zero-copy calls: 2.0 MiB went file -> socket through "
        "2 sendfile calls of 1.0 MiB, but 2.0 MiB went file -> socket through 128 read/write "
        "calls of 32.0 KiB"
    )


def test_no_data_says_what_moved_instead() -> None:
    assert telltale(analyse(copy_loop(4))) == (
        "only 128.0 KiB moved from fd to fd (under the 1.0 MiB floor): no fast path to judge"
    )
    said = telltale(analyse([Event(1, "write", None, "/dev/pts/0", "memory", "tty", 5 << 20)]))
    assert said == (
        "nothing moved from fd to fd (5.0 MiB was written from memory: no zero-copy call "
        "could move those): no fast path to judge"
    )


def test_json_schema_keys() -> None:
    d = as_dict(analyse(copy_loop(64), backend="strace"))
    assert {"verdict", "zero_copy_bytes", "copied_bytes", "syscalls", "backend"} <= d.keys()
    assert d["verdict"] == "user-space" and type(d["verdict"]) is str
    assert d["syscalls"] == {
        "read": {"calls": 64, "bytes": 2 << 20, "errors": 0, "eagain": 0, "average": 32 << 10},
        "write": {"calls": 64, "bytes": 2 << 20, "errors": 0, "eagain": 0, "average": 32 << 10},
    }


def test_text_report_has_table_flows_and_verdict() -> None:
    events = [Event(1, "sendfile", "/f", "TCP:[a->b]", "file", "socket", 8 << 20, calls=128)]
    events += [Event(1, "sendto", None, "TCP:[a->b]", "memory", "socket", 120)]
    text = render_text(analyse(events))
    lines = text.splitlines()
    assert lines[0] == "zcopy trace: backend strace"
    assert any(ln.startswith("sendfile") and "8.0 MiB" in ln and "64.0 KiB" in ln for ln in lines)
    assert "  (1 smaller flows, 120 B in all)" in lines, "header bytes are summed, not listed"
    assert lines[-1].startswith("verdict: fast-path - 8.0 MiB went file -> socket")


def test_json_is_one_object() -> None:
    out = render_json(analyse([], backend="bpftrace"))
    assert "\n" not in out
    assert json.loads(out)["backend"] == "bpftrace"
