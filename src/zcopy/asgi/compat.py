"""The base class of ``FileResponse``: Starlette's ``Response`` when Starlette is installed.

FastAPI sends whatever an endpoint returns through its JSON encoder unless it
``isinstance(..., starlette.responses.Response)``; being a subclass is what
lets ``return FileResponse(path)`` work there. Without Starlette the response
is a plain ASGI callable and needs nothing outside the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.responses import Response as ResponseBase
else:
    try:
        from starlette.responses import Response as ResponseBase
    except ImportError:  # pragma: no cover - Starlette is in the test extra

        class ResponseBase:
            """Stand-in base: an ASGI response object with nothing inherited."""


__all__ = ["ResponseBase"]
