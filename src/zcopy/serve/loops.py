"""``--loop``: which event loop a server runs on, for static files and apps alike."""

from __future__ import annotations

from collections.abc import Coroutine

from .. import daemon

LOOPS = ("asyncio", "uvloop")  # the stdlib's, or uvloop's (libuv) if installed


def run_loop(main: Coroutine[object, object, object], loop: str) -> None:
    """Run ``main`` to its end on a new event loop of the kind ``--loop`` names.

    >>> async def main(): print("ran")
    >>> run_loop(main(), "asyncio")
    ran
    """
    import asyncio  # here: the CLI imports this module for --help, which needs no loop

    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)


def check_loop(loop: str) -> None:
    """Raise ``StartupError`` (usage) if the ``--loop`` asked for is not installed.

    >>> check_loop("asyncio")
    """
    if loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise daemon.StartupError(
                "--loop uvloop: uvloop is not installed (pip install uvloop)", daemon.USAGE
            ) from None
