"""A stand-in subcommand module for tests/test_cli.py: it records the signal dispositions it
finds when it is imported and when it runs (a server's imports and setup come first)."""

from __future__ import annotations

import argparse
import os
import signal

AT_IMPORT = signal.getsignal(signal.SIGUSR1)
AT_RUN: list[object] = []


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nothing", action="store_true")


def run(args: argparse.Namespace) -> int:
    AT_RUN.append(signal.getsignal(signal.SIGHUP))
    os.kill(os.getpid(), signal.SIGUSR1)  # ignored: the default action would end the process
    return 0
