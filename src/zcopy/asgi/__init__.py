"""``zcopy.asgi``: file responses for any ASGI app that keep the kernel's fast path.

* ``FileResponse(path)``: ranges, multipart, preconditions, HEAD; each file
  part goes by ``http.response.zerocopysend`` when the server offers it, the
  whole file by ``http.response.pathsend``, else by a read loop.
* ``StaticFiles(directory)``: a directory mount on the same planner.
* ``count_bytes(app, on_bytes)``: a middleware that counts every response
  byte and passes pathsend/zerocopysend through untouched.
* ``without_extensions(app)``: for an app behind a middleware that cannot
  carry zerocopysend, hide it so the app falls back to body messages.

See docs/asgi.md, including how to write middleware that keeps the extensions.

>>> from zcopy.asgi import FileResponse
>>> FileResponse(__file__).status_code
200
"""

from __future__ import annotations

from .counting import count_bytes, message_bytes
from .delivery import Delivery, FileShrank
from .extensions import without_extensions
from .response import FileResponse
from .static import StaticFiles

__all__ = [
    "Delivery",
    "FileResponse",
    "FileShrank",
    "StaticFiles",
    "count_bytes",
    "message_bytes",
    "without_extensions",
]
