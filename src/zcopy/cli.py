"""The ``zcopy`` command. Each subcommand lives in its own module, imported only when run.

A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Tools depend on servers and core, never the reverse.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("zcopy.tools.bench", "re-run the seed's sendfile/splice experiment on this machine"),
    "serve": ("zcopy.serve", "HTTP/1.1 static file server on the fast path"),
    "proxy": ("zcopy.proxy", "TCP proxy that relays by splice"),
    "trace": ("zcopy.tools.trace", "tell whether a process is on the fast path"),
}


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_) in SUBCOMMANDS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                found[name] = (module, help_)
        except ModuleNotFoundError:  # the parent package of a tool not installed
            continue
    return found


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s module is imported to fill in its options.

    Importing one subcommand never depends on another importing cleanly.

    >>> build_parser().prog
    'zcopy'
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="zcopy",
        description="Move bytes the way the kernel wants them moved, and show that it happened.",
    )
    parser.add_argument("--version", action="version", version=f"zcopy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in _available().items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zcopy`` console script.

    >>> main(["--version"])  # doctest: +SKIP
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("zcopy: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
