"""zcopy.proxy.config and .upstreams: argument parsing and round-robin order (sans-IO)."""

from __future__ import annotations

import argparse

import pytest

from zcopy.proxy.config import add_arguments, format_address, from_args, parse_address
from zcopy.proxy.stats import ProxyStats
from zcopy.proxy.upstreams import RoundRobin


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:8443", ("::1", 8443)),
        ("example.org:65535", ("example.org", 65535)),
    ],
)
def test_parse_address_round_trips(text: str, want: tuple[str, int]) -> None:
    assert parse_address(text) == want
    assert parse_address(format_address(want)) == want


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("127.0.0.1", "not HOST:PORT"),
        (":80", "not HOST:PORT"),
        ("h:http", "not a number"),
        ("h:70000", "out of range"),
        ("::1:80", "brackets"),
    ],
)
def test_parse_address_says_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_address(text)


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_options_become_a_config() -> None:
    c = from_args(_parse(
        "--listen", "127.0.0.1:0", "--upstream", "a:1", "--upstream", "b:2", "--no-splice",
        "--max-connections", "7", "--connect-timeout", "1.5", "--idle-timeout", "0",
        "--grace", "2", "--workers", "3",
    ))
    assert c.listen == ("127.0.0.1", 0)
    assert c.upstreams == (("a", 1), ("b", 2))
    assert (c.splice, c.max_connections, c.connect_timeout) == (False, 7, 1.5)
    assert (c.idle_timeout, c.grace, c.workers) == (None, 2.0, 3)


@pytest.mark.parametrize(
    "argv",
    [
        ("--listen", "127.0.0.1:0"),  # no upstream
        ("--listen", "nope", "--upstream", "a:1"),
        ("--listen", ":0", "--upstream", "a:1", "--workers", "0"),
        ("--listen", ":0", "--upstream", "a:1", "--idle-timeout", "-1"),
    ],
)
def test_bad_options_are_refused(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(*argv)
    assert "error" in capsys.readouterr().err


def test_round_robin_turns_and_falls_back_to_the_others() -> None:
    rr = RoundRobin([("a", 1), ("b", 2), ("c", 3)])
    orders = [[h for h, _ in rr.attempt_order()] for _ in range(4)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    with pytest.raises(ValueError):
        RoundRobin([])


def test_stats_report_counts_and_json_line() -> None:
    s = ProxyStats()
    for _ in range(3):
        s.opened()
    s.count(0, 5)
    s.count(1, 7)
    s.closed()
    s.failed += 1
    report = s.report()
    assert "connections: active 2, total 3, failed 1" in report
    assert "bytes: client->upstream 5, upstream->client 7" in report
    assert report.splitlines()[-1].startswith("stats-json {")
