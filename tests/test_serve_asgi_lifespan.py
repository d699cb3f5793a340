"""The lifespan protocol against real Starlette apps and bare ones, in process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette

from zcopy.serve.asgi import lifespan as lifespan_mod
from zcopy.serve.asgi.lifespan import Lifespan, Mode


def starlette_app(fail: str = "") -> Starlette:
    @contextlib.asynccontextmanager
    async def life(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if fail == "startup":
            raise RuntimeError("no database")
        yield {"pool": "ready"}
        if fail == "shutdown":
            raise RuntimeError("flush failed")

    return Starlette(lifespan=life)


async def no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http", "this app only speaks http"


def cycle(app: Any, mode: Mode) -> tuple[bool, dict[str, Any], bool]:
    async def main() -> tuple[bool, dict[str, Any], bool]:
        ls = Lifespan(app, mode)
        up = await ls.startup()
        return up, ls.state, await ls.shutdown(5)

    return asyncio.run(main())


def test_starlette_startup_state_and_shutdown() -> None:
    assert cycle(starlette_app(), Mode.AUTO) == (True, {"pool": "ready"}, True)


@pytest.mark.parametrize("mode", [Mode.AUTO, Mode.ON])
def test_startup_failure_stops(mode: Mode, capsys: pytest.CaptureFixture[str]) -> None:
    up, _, _ = cycle(starlette_app("startup"), mode)
    assert not up and "no database" in capsys.readouterr().err


def test_shutdown_failure_is_reported() -> None:
    up, _, down = cycle(starlette_app("shutdown"), Mode.ON)
    assert up and not down


def test_an_app_without_lifespan_is_served_under_auto_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cycle(no_lifespan, Mode.AUTO)[0] is True
    assert "unsupported" in capsys.readouterr().err
    assert cycle(no_lifespan, Mode.ON)[0] is False


def test_off_never_calls_the_app() -> None:
    async def refuses(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("called")

    assert cycle(refuses, Mode.OFF) == (True, {}, True)


def test_a_hung_startup_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hangs(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(3600)

    monkeypatch.setattr(lifespan_mod, "STARTUP_TIMEOUT", 0.2)
    assert cycle(hangs, Mode.ON)[0] is False
