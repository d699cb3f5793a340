"""Process limits a server needs before it accepts: enough fds for its connection cap."""

from __future__ import annotations

import resource


def raise_fd_limit(want: int | None = None) -> int:
    """Lift the soft fd limit toward ``want`` (``None``: the hard limit); return the soft limit.

    A connection costs a socket (two for a proxy) and maybe a file: a soft limit of
    1,024 would cap a server long before its ``--max-connections``. Never lowers it;
    a limit that cannot be raised is left as it is.

    >>> raise_fd_limit(16) >= 16
    True
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if want is None else want
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft
