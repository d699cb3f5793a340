"""argparse value types shared by the subcommands: one wording for one kind of mistake."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_int(text: str) -> int:
    """A whole number >= 1.

    >>> positive_int("4")
    4
    """
    value = _whole(text, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 1")
    return value


def byte_count(text: str) -> int:
    """A number of bytes, >= 0.

    >>> byte_count("16384")
    16384
    >>> byte_count("-1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: '-1': must be >= 0
    """
    value = _whole(text, "a number of bytes")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return value


def port_number(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535.

    >>> port_number("8000")
    8000
    """
    value = _whole(text, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: port must be 0-65535")
    return value


def seconds(text: str) -> float:
    """A duration in seconds, >= 0.

    >>> seconds("2.5")
    2.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be >= 0")
    return value


def from_parser(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Turn a parser that raises ValueError into an argparse type with the same message.

    >>> from_parser(int)("3")
    3
    """

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert
