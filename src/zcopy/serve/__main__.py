"""``python -m zcopy.serve``: the same as ``zcopy serve``."""

from __future__ import annotations

import sys

from ..cli import main as _cli_main


def main(argv: list[str] | None = None) -> int:
    """Run ``zcopy serve`` with ``argv`` (default: this process's arguments).

    For example (it serves until stopped, so it is not a doctest)::

        main(["/srv/www", "--port", "8000"])   # python -m zcopy.serve /srv/www --port 8000
    """
    return _cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
