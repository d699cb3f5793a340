"""The ``zcopy`` command. Each subcommand lives in its own module, imported only when run.

A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``.
``python -m zcopy`` is the same command. Every subcommand's ``--help`` shows its
defaults; a missing optional dependency is one line naming the extra to install.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

# name -> (module, one-line help). Tools depend on servers and core, never the reverse.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "bench": (
        "zcopy.tools.bench",
        "measure the CPU each way of sending a file costs here "
        "(the Go sendfile/splice/io.Copy study, for Python)",
    ),
    "serve": ("zcopy.serve", "HTTP/1.1 static file server on the fast path"),
    "proxy": ("zcopy.proxy", "TCP proxy that relays by splice"),
    "trace": ("zcopy.tools.trace", "tell whether a process is on the fast path"),
}
# The long-running servers. Signals an operator may send them but they need not handle
# (SIGUSR1 for --stats, SIGUSR2, SIGHUP) kill by default: they are ignored from the first
# line of main(), before the imports and the setup that take most of a startup, until the
# server installs its own handlers. Not for the tools: ``zcopy trace CMD`` would pass an
# ignored disposition on to CMD.
DAEMONS = frozenset({"serve", "proxy"})


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_) in SUBCOMMANDS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                found[name] = (module, help_)
        except ModuleNotFoundError:  # the parent package of a tool not installed
            continue
    return found


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, unless the help already says it.

    Flags (``store_true``) and options without a default get no "(default ...)".

    >>> p = argparse.ArgumentParser(formatter_class=DefaultsFormatter)
    >>> _ = p.add_argument("--port", type=int, default=8000, help="TCP port")
    >>> _ = p.add_argument("--grace", type=int, default=5, help="wait (default 5)")
    >>> help_ = " ".join(p.format_help().split())
    >>> "TCP port (default 8000)" in help_, help_.count("default")
    (True, 2)
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            re.search(r"\bdefault\b", text)
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return text
        return f"{text} (default %(default)s)"


def _extras() -> dict[str, list[str]]:
    """Importable module name -> the extras of zcopy that install it (from its metadata)."""
    found: dict[str, list[str]] = {}
    try:
        requires = importlib.metadata.requires("zcopy") or []
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return found
    for line in requires:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)[^;]*;\s*extra\s*==\s*[\"']([^\"']+)", line)
        if m and m[1].lower() != "zcopy":
            found.setdefault(m[1].lower().replace("-", "_"), []).append(m[2])
    return found


def missing_dependency(command: str, exc: ModuleNotFoundError) -> str | None:
    """The one line to print when ``command`` needs a module that is not installed.

    ``None`` when the missing module is not an optional dependency of zcopy
    (then it is a bug, and the traceback is the honest report).

    >>> missing_dependency("serve", ModuleNotFoundError(name="httptools"))
    "zcopy serve needs httptools: pip install 'zcopy[serve]'"
    >>> missing_dependency("serve", ModuleNotFoundError(name="zcopy.nothing")) is None
    True
    """
    top = (exc.name or "").partition(".")[0]
    extras = _extras().get(top.lower())
    if not extras:
        return None
    extra = command if command in extras else extras[0]
    return f"zcopy {command} needs {top}: pip install 'zcopy[{extra}]'"


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
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=DefaultsFormatter)
        if name == command:
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zcopy`` console script (and of ``python -m zcopy``).

    >>> main([])
    usage: zcopy [-h] [--version] COMMAND ...
    commands: bench, serve, proxy, trace (zcopy COMMAND --help)
    2
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    shielded: dict[int, Any] = {}
    if command in DAEMONS:
        from .daemon.workers import ignore_optional

        shielded = ignore_optional()
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_usage(sys.stdout)
            print("commands: " + ", ".join(_available()) + " (zcopy COMMAND --help)")
            return 2
        module = importlib.import_module(args._module)
        return int(module.run(args) or 0)
    except ModuleNotFoundError as exc:
        line = missing_dependency(command or "", exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("zcopy: interrupted", file=sys.stderr)
        return 130
    finally:
        for sig, handler in shielded.items():
            signal.signal(sig, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
