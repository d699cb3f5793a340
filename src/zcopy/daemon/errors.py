"""What can stop a daemon before it serves: one line for the operator, and an exit status."""

from __future__ import annotations

USAGE = 2  # the command line asked for something impossible (as argparse exits)
FAILURE = 1  # the command line was fine, the machine said no (port taken, no such directory)


class StartupError(Exception):
    """A daemon cannot start: ``str(exc)`` is the one line to print, ``status`` the exit status.

    >>> exc = StartupError("cannot listen on 127.0.0.1:80: permission denied")
    >>> exc.status, str(exc)
    (1, 'cannot listen on 127.0.0.1:80: permission denied')
    >>> StartupError("port 99999 is out of range 0-65535", USAGE).status
    2
    """

    def __init__(self, message: str, status: int = FAILURE) -> None:
        super().__init__(message)
        self.status = status
