"""``zcopy bench``: the Go blog post's sendfile/splice/io.Copy experiment, re-run for Python.

One big file goes over loopback TCP from a server process to a client process
(pinned to CPUs 0 and 1) with each handler shape (mode); the server's CPU
comes from the kernel's accounting, the syscalls from strace attached for the
transfers only. See ``docs/bench.md``.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> p.parse_args(["--quick", "--modes", "raw,wrapped"]).modes
('raw', 'wrapped')
"""

from __future__ import annotations

import argparse

from .options import add_arguments, from_args

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    """Entry point of ``zcopy bench``; returns the exit status."""
    from .run import execute

    return execute(from_args(args))
