"""The ASGI lifespan protocol: startup before the first connection, shutdown after the last.

``--lifespan auto`` (the default) runs it when the app speaks it: an app that
raises before answering startup does not, and is served without it. ``on``
makes that a failure; ``off`` never calls the app with a lifespan scope.
``startup.failed`` (or, under ``on``, an exception) stops the server with a
non-zero status, as does ``shutdown.failed``. Both waits are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import traceback
from typing import Any

from ..log import error
from .scope import ASGI

STARTUP_TIMEOUT = 120.0  # an app loading a model may take a while; a hung one must not hang us


class Mode(enum.Enum):
    """``--lifespan``: whether the app's lifespan protocol runs."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


AsgiApp = Any  # an ASGI 3 callable: app(scope, receive, send)


class Lifespan:
    """Run one app's lifespan: ``await startup()``, serve, ``await shutdown()``.

    ``state`` is the dict the app fills at startup; every request scope gets
    a shallow copy of it.

    >>> async def app(scope, receive, send):
    ...     while True:
    ...         msg = await receive()
    ...         scope["state"]["ready"] = True
    ...         await send({"type": msg["type"] + ".complete"})
    ...         if msg["type"] == "lifespan.shutdown":
    ...             return
    >>> async def demo():
    ...     ls = Lifespan(app, Mode.AUTO)
    ...     return await ls.startup(), ls.state, await ls.shutdown(5)
    >>> asyncio.run(demo())
    (True, {'ready': True}, True)
    """

    def __init__(self, app: AsgiApp, mode: Mode) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = mode is not Mode.OFF
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answer: asyncio.Future[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        return await self._inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(message)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise  # cancelled at shutdown
            if self._answer is not None and not self._answer.done():
                self._answer.set_exception(exc)
                self._answer.exception()  # marked retrieved: _exchange reports it
            else:
                error("lifespan task raised:\n" + "".join(traceback.format_exception(exc)))
        else:
            if self._answer is not None and not self._answer.done():
                self._answer.set_exception(RuntimeError("the app returned from lifespan"))
                self._answer.exception()

    async def _exchange(self, kind: str, timeout: float) -> dict[str, Any]:
        self._answer = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait({"type": f"lifespan.{kind}"})
        async with asyncio.timeout(timeout):
            return await self._answer

    async def startup(self) -> bool:
        """Send ``lifespan.startup``; return whether serving may begin."""
        if not self.supported:
            return True
        self._task = asyncio.get_running_loop().create_task(self._main())
        try:
            answer = await self._exchange("startup", STARTUP_TIMEOUT)
        except TimeoutError:
            error(f"lifespan startup did not finish in {STARTUP_TIMEOUT:g}s")
            return False
        except Exception as exc:
            if self.mode is Mode.AUTO:
                self.supported = False
                error(f"lifespan unsupported by the app ({type(exc).__name__}: {exc}); going on")
                return True
            error("lifespan startup raised:\n" + "".join(traceback.format_exception(exc)))
            return False
        if answer.get("type") == "lifespan.startup.complete":
            return True
        error(f"lifespan startup failed: {answer.get('message') or answer.get('type')}")
        return False

    async def shutdown(self, timeout: float) -> bool:
        """Send ``lifespan.shutdown`` (bounded by ``timeout``); return whether it succeeded."""
        if not self.supported or self._task is None:
            return True
        ok = False
        try:
            if self._task.done():  # the app left its lifespan early: it has nothing to undo
                return True
            answer = await self._exchange("shutdown", timeout)
            ok = answer.get("type") == "lifespan.shutdown.complete"
            if not ok:
                error(f"lifespan shutdown failed: {answer.get('message') or answer}")
        except TimeoutError:
            error(f"lifespan shutdown did not finish in {timeout:g}s")
        except Exception as exc:
            error("lifespan shutdown raised:\n" + "".join(traceback.format_exception(exc)))
        finally:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        return ok
