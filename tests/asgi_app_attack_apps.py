"""Apps for ``test_asgi_app_attacks``: zcopy.asgi under a real server, attacked from the side.

Files come from ``ZCOPY_TEST_ROOT`` (``site/`` is served; ``secret.txt`` beside it
must never be). Each app plays the part of someone other than the client: a local
user racing the file system, or a careless caller.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zcopy.asgi import FileResponse, StaticFiles, without_extensions

ROOT = Path(os.environ.get("ZCOPY_TEST_ROOT", "."))
SITE = ROOT / "site"
SECRET = ROOT / "secret.txt"


def swap_on_start(app: Any, name: str) -> Any:
    """``app``, with ``SITE/name`` replaced by a symlink to the secret once its head goes out.

    The moment is the worst one for a server that opens by path: after the app
    checked and sized the file it opened, before the server opens the path.
    """

    async def swapping(scope: Any, receive: Any, send: Any) -> None:
        async def send_then_swap(message: Any) -> None:
            if message["type"] == "http.response.start":
                victim = SITE / name
                victim.unlink()
                victim.symlink_to(SECRET)
            await send(message)

        await app(scope, receive, send_then_swap)

    return swapping


def static_pathsend() -> Any:
    """For ``--factory``: the documented rescue for a middleware that drops zerocopysend
    (docs/asgi.md), so the static app sees pathsend only.

    A factory, not a module-level app: StaticFiles checks its directory when made, and
    this module is imported (for its doctests) where no ``site/`` exists.
    """
    return swap_on_start(without_extensions(StaticFiles(SITE)), "victim.txt")


async def no_content(scope: Any, receive: Any, send: Any) -> None:
    """A careless caller: a file answered with a status that never carries content."""
    if scope["type"] != "http":
        return
    status = int(scope["query_string"] or b"200")
    await FileResponse(SITE / "victim.txt", status_code=status)(scope, receive, send)
