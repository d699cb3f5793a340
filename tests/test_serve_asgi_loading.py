"""Finding the app: module:attr, --app-dir, --factory, and one line for every mistake."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from zcopy.serve.asgi.loading import AppLoadError, load_app


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "zc_loadme.py").write_text(
        "async def app(scope, receive, send): ...\n"
        "class Holder:\n    inner = app\n"
        "def factory():\n    return app\n"
        "not_callable = 3\n"
    )
    (tmp_path / "zc_broken.py").write_text("import zc_no_such_dependency\n")
    yield tmp_path
    for name in ("zc_loadme", "zc_broken"):
        sys.modules.pop(name, None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def test_module_attr_dotted_and_factory(app_dir: Path) -> None:
    app = load_app("zc_loadme:app", app_dir=str(app_dir))
    assert load_app("zc_loadme:Holder.inner", app_dir=str(app_dir)) is app
    assert load_app("zc_loadme:factory", app_dir=str(app_dir), factory=True) is app


@pytest.mark.parametrize(
    ("spec", "factory", "message"),
    [
        ("zc_loadme", False, "expected MODULE:ATTR"),
        (":app", False, "expected MODULE:ATTR"),
        ("zc_nowhere:app", False, "no module named 'zc_nowhere'"),
        ("zc_loadme:missing", False, "has no attribute 'missing'"),
        ("zc_loadme:not_callable", False, "not an ASGI app"),
        ("zc_loadme:not_callable", True, "is not callable"),
    ],
)
def test_mistakes_are_one_line(app_dir: Path, spec: str, factory: bool, message: str) -> None:
    with pytest.raises(AppLoadError, match=message) as info:
        load_app(spec, app_dir=str(app_dir), factory=factory)
    assert "\n" not in str(info.value)


def test_the_apps_own_import_error_keeps_its_traceback(app_dir: Path) -> None:
    with pytest.raises(ModuleNotFoundError, match="zc_no_such_dependency"):
        load_app("zc_broken:app", app_dir=str(app_dir))


def test_app_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError, match="not a directory"):
        load_app("m:app", app_dir=str(tmp_path / "nope"))
