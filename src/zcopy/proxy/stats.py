"""The proxy's counters, and the report printed on SIGUSR1 and at shutdown."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import zcopy


@dataclass(slots=True)
class ProxyStats:
    """Connection and byte counters of one proxy process.

    ``failed``: connections that ended in an error (no upstream, a reset);
    ``refused``: clients turned away at the connection cap;
    ``idle_closed``: connections closed by the idle timeout.

    >>> s = ProxyStats(); s.opened(); s.count(0, 10); s.closed()
    >>> s.active, s.total, s.bytes_up
    (0, 1, 10)
    """

    active: int = 0
    total: int = 0
    failed: int = 0
    refused: int = 0
    idle_closed: int = 0
    bytes_up: int = 0  # client -> upstream
    bytes_down: int = 0  # upstream -> client

    def opened(self) -> None:
        """A client was accepted and is being served."""
        self.active += 1
        self.total += 1

    def closed(self) -> None:
        """A served client's connection is gone."""
        self.active -= 1

    def count(self, direction: int, n: int) -> None:
        """``relay(on_bytes=...)``: 0 is client -> upstream, 1 is upstream -> client."""
        if direction == 0:
            self.bytes_up += n
        else:
            self.bytes_down += n

    def as_dict(self) -> dict[str, object]:
        """The counters plus ``zcopy.stats()`` (routes taken, fallback reasons).

        >>> sorted(ProxyStats().as_dict())[:3]
        ['bytes', 'connections', 'pid']
        """
        return {
            "pid": os.getpid(),
            "connections": {
                "active": self.active,
                "total": self.total,
                "failed": self.failed,
                "refused": self.refused,
                "idle_closed": self.idle_closed,
            },
            "bytes": {"client_to_upstream": self.bytes_up, "upstream_to_client": self.bytes_down},
            "zcopy": zcopy.stats().as_dict(),
        }

    def report(self) -> str:
        """Human lines, then one ``stats-json`` line for scripts.

        >>> ProxyStats().report().splitlines()[0]
        'connections: active 0, total 0, failed 0, refused 0, idle-closed 0'
        """
        routes = zcopy.stats()
        lines = [
            f"connections: active {self.active}, total {self.total}, failed {self.failed}, "
            f"refused {self.refused}, idle-closed {self.idle_closed}",
            f"bytes: client->upstream {self.bytes_up}, upstream->client {self.bytes_down}",
        ]
        for name, r in sorted(routes.routes.items()):
            lines.append(
                f"route {name}: {r.calls} copies, {r.bytes} bytes, {r.syscalls} syscalls"
            )
        for code, n in sorted(routes.fallbacks.items()):
            lines.append(f"fallback {code} x{n}: {routes.fallback_examples.get(code, '')}")
        lines.append("stats-json " + json.dumps(self.as_dict(), sort_keys=True))
        return "\n".join(lines)
