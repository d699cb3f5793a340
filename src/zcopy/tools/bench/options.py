"""The bench's settings, parsed and checked without touching the machine (sans-IO)."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from ..._cliargs import from_parser, positive_int
from .modes import MODES

MIB = 1 << 20
GIB = 1 << 30

_UNITS = {"": 1, "k": 1 << 10, "m": MIB, "g": GIB}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)

QUICK_SIZE = 16 * MIB
QUICK_TRANSFERS = 2
# The Go post's strace -c covered five transfers; more adds trace time, not information.
STRACE_TRANSFERS = 5


def parse_size(text: str) -> int:
    """Parse ``512M``, ``512MiB``, ``1g``, ``4096`` into bytes (powers of 1024).

    >>> parse_size("512MiB"), parse_size("16m"), parse_size("1.5K"), parse_size("10")
    (536870912, 16777216, 1536, 10)
    """
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size (examples: 512M, 16MiB, 1G)")
    value = int(float(m[1]) * _UNITS[m[2].lower()])
    if value < 1:
        raise ValueError(f"{text!r}: the size must be at least 1 byte")
    return value


def parse_modes(text: str) -> tuple[str, ...]:
    """Parse ``raw,wrapped`` into mode names, in the bench's own order, refusing unknown ones.

    >>> parse_modes("wrapped, raw")
    ('raw', 'wrapped')
    >>> parse_modes("all") == tuple(MODES)
    True
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or names == ["all"]:
        return tuple(MODES)
    unknown = [n for n in names if n not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    return tuple(n for n in MODES if n in names)


@dataclass(frozen=True, slots=True)
class Settings:
    """One run's parameters, after ``--quick`` and the defaults are applied.

    >>> Settings(size=MIB, transfers=2, modes=("raw",)).strace_transfers
    2
    """

    size: int
    transfers: int
    modes: tuple[str, ...]
    repeat: int = 1
    file: str | None = None
    out: str | None = None
    strace: bool = True
    quick: bool = False
    flamegraph: str | None = None
    wide: bool = False

    @property
    def strace_transfers(self) -> int:
        """Transfers in the strace pass: as in the Go post, at most five."""
        return min(self.transfers, STRACE_TRANSFERS)


_size_arg = from_parser(parse_size)
_positive = positive_int
_modes_arg = from_parser(parse_modes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``zcopy bench``'s options on ``parser``.

    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> from_args(p.parse_args(["--quick"])).size == QUICK_SIZE
    True
    """
    parser.add_argument("--size", type=_size_arg, metavar="SIZE",
                        help="bytes per transfer, e.g. 512M (default 512MiB; --quick: 16MiB)")
    parser.add_argument("--transfers", type=_positive, metavar="N",
                        help="transfers per mode and repeat (default 10; --quick: 2)")
    parser.add_argument("--modes", type=_modes_arg, metavar="M[,M...]",
                        help=f"modes to run (default all): {', '.join(MODES)}")
    parser.add_argument("--file", metavar="PATH",
                        help="serve this file instead of generating one (its size wins)")
    parser.add_argument("--out", metavar="DIR",
                        help="where results.json and the charts go "
                             "(default: a new zcopy-bench-YYYYmmdd-HHMMSS here)")
    parser.add_argument("--repeat", type=_positive, default=1, metavar="R",
                        help="run everything R times; report the median and the spread")
    parser.add_argument("--no-strace", action="store_true",
                        help="skip the strace pass (syscall counts)")
    parser.add_argument("--quick", action="store_true",
                        help="small and fast: 16MiB x 2 transfers, for smoke runs")
    parser.add_argument("--flamegraph", metavar="MODE", choices=tuple(MODES),
                        help="also record a py-spy flamegraph (SVG) of MODE's server")
    parser.add_argument("--wide", action="store_true",
                        help="print every column (user/sys s, softirq, MiB/s, each syscall); "
                             "results.json always has them all")


def from_args(args: argparse.Namespace) -> Settings:
    """Apply ``--quick`` and the defaults to the parsed arguments."""
    quick = bool(args.quick)
    size = args.size if args.size is not None else (QUICK_SIZE if quick else 512 * MIB)
    transfers = args.transfers if args.transfers is not None else (
        QUICK_TRANSFERS if quick else 10
    )
    return Settings(
        size=size,
        transfers=transfers,
        modes=args.modes if args.modes is not None else tuple(MODES),
        repeat=args.repeat,
        file=args.file,
        out=args.out,
        strace=not args.no_strace,
        quick=quick,
        flamegraph=args.flamegraph,
        wide=bool(getattr(args, "wide", False)),
    )
