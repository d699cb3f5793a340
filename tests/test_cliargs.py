"""The shared argparse value types: each mistake gets its one wording (a table, sans-IO)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from zcopy._cliargs import from_parser, port_number, positive_int, seconds


@pytest.mark.parametrize(
    ("convert", "text", "want"),
    [
        (positive_int, "1", 1),
        (positive_int, "64", 64),
        (port_number, "0", 0),
        (port_number, "65535", 65535),
        (seconds, "0", 0.0),
        (seconds, "2.5", 2.5),
    ],
)
def test_good_values(convert: Callable[[str], object], text: str, want: object) -> None:
    assert convert(text) == want


@pytest.mark.parametrize(
    ("convert", "text", "said"),
    [
        (positive_int, "x", "'x' is not a whole number"),
        (positive_int, "2.5", "'2.5' is not a whole number"),
        (positive_int, "0", "'0': must be >= 1"),
        (port_number, "http", "'http' is not a port number"),
        (port_number, "-1", "'-1': port must be 0-65535"),
        (port_number, "65536", "'65536': port must be 0-65535"),
        (seconds, "soon", "'soon' is not a number of seconds"),
        (seconds, "-0.5", "'-0.5': seconds must be >= 0"),
    ],
)
def test_each_mistake_says_what_is_wrong(
    convert: Callable[[str], object], text: str, said: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        convert(text)
    assert str(info.value) == said


def test_a_parser_becomes_a_type_with_its_own_message() -> None:
    def address(text: str) -> tuple[str, int]:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} is not HOST:PORT")
        return host, int(port)

    convert = from_parser(address)
    assert convert.__name__ == "address"  # argparse names the type in its error line
    assert convert("h:1") == ("h", 1)
    with pytest.raises(argparse.ArgumentTypeError, match="'h' is not HOST:PORT"):
        convert("h")
    parser = argparse.ArgumentParser(prog="p", exit_on_error=False)
    parser.add_argument("--to", type=convert)
    with pytest.raises(argparse.ArgumentError, match="'nope' is not HOST:PORT"):
        parser.parse_args(["--to", "nope"])
