"""The report in words."""

from __future__ import annotations

import json

from zcopy.tools.flows import Event, analyse
from zcopy.tools.report import render_json, render_text


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
