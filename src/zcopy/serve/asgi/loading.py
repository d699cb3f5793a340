"""Find the app: ``module:attr`` imported from the current directory, as uvicorn does.

``--app-dir DIR`` puts DIR first on ``sys.path`` instead; ``--factory`` calls
the attribute (with no arguments) and serves what it returns. Every way of
getting it wrong is one ``AppLoadError`` line, never a traceback of ours
(an import error *inside* the app keeps its traceback: that is the app's bug).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


class AppLoadError(Exception):
    """The app could not be found or is not an ASGI callable (one line)."""


def load_app(spec: str, *, app_dir: str = ".", factory: bool = False) -> Any:
    """Import ``module:attr`` (``attr`` may be dotted) and return the ASGI app.

    >>> load_app("json:dumps").__name__
    'dumps'
    >>> load_app("json")
    Traceback (most recent call last):
    ...
    zcopy.serve.asgi.loading.AppLoadError: --app 'json': expected MODULE:ATTR, e.g. main:app
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"--app {spec!r}: expected MODULE:ATTR, e.g. main:app")
    path = os.path.abspath(app_dir)
    if not os.path.isdir(path):
        raise AppLoadError(f"--app-dir {app_dir!r} is not a directory")
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise AppLoadError(f"--app {spec!r}: no module named {exc.name!r} in {path}") from None
        raise  # the module exists and failed its own import: show the app's traceback
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(
                f"--app {spec!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if factory:
        if not callable(obj):
            raise AppLoadError(f"--app {spec!r} --factory: {attr!r} is not callable")
        obj = obj()
    if not callable(obj):
        raise AppLoadError(f"--app {spec!r}: {type(obj).__name__} object is not an ASGI app")
    return obj
