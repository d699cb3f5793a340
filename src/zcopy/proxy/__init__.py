"""``zcopy proxy``: a TCP proxy whose payload never enters user space (splice both ways).

``zcopy proxy --listen HOST:PORT --upstream HOST:PORT [--upstream ...]`` prints
``listening on HOST:PORT`` to stderr when ready; SIGUSR1 prints the stats,
SIGTERM stops gracefully. See ``docs/proxy.md``.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> p.parse_args(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"]).no_splice
False
"""

from __future__ import annotations

from .config import add_arguments
from .main import run

__all__ = ["add_arguments", "run"]
