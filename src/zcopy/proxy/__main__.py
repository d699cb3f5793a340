"""``python -m zcopy.proxy``: the same as ``zcopy proxy``."""

from __future__ import annotations

import sys

from ..cli import main as _cli_main


def main(argv: list[str] | None = None) -> int:
    """Run ``zcopy proxy`` with ``argv`` (default: this process's arguments).

    For example (it relays until stopped, so it is not a doctest)::

        main(["--listen", "127.0.0.1:8080", "--upstream", "127.0.0.1:9000"])
    """
    return _cli_main(["proxy", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
