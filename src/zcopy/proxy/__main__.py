"""``python -m zcopy.proxy``: the same as ``zcopy proxy``, without loading the other subcommands."""

from __future__ import annotations

import argparse
import sys

from . import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` as ``zcopy proxy`` does and run the proxy."""
    parser = argparse.ArgumentParser(prog="zcopy proxy", description=run.__doc__)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
