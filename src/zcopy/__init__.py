"""zcopy: io.Copy for Python, on the kernel's zero-copy paths, with proof.

>>> import io, zcopy
>>> zcopy.copy(io.BytesIO(), b"hello")
5
"""

from typing import TYPE_CHECKING, Any

from ._copy import STRICT_ENV, copy, explain
from ._errors import FastPathLost, FastPathWarning
from ._plan import Fallback, Plan, Route
from ._protocol import Handoff
from ._stats import RouteStats, Stats, reset_stats, stats
from ._wrappers import Observed, Section, observe, section

if TYPE_CHECKING:
    from ._aio import acopy
    from ._relay import relay, relay_plan
else:
    # The asyncio half is imported on first use: asyncio costs more to import than the
    # whole synchronous core, and a program (or a pytest run, through the plugin) that only
    # calls copy() should not pay for it.
    _LAZY = {"acopy": "._aio", "relay": "._relay", "relay_plan": "._relay"}

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'zcopy' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "STRICT_ENV",
    "FastPathLost",
    "Fallback",
    "FastPathWarning",
    "Handoff",
    "Observed",
    "Plan",
    "Route",
    "RouteStats",
    "Section",
    "Stats",
    "acopy",
    "copy",
    "explain",
    "observe",
    "relay",
    "relay_plan",
    "reset_stats",
    "section",
    "stats",
]

__version__ = "0.1.0"

import warnings as _warnings

# Off unless asked for: filters the user sets (-W, PYTHONWARNINGS, simplefilter) come first.
_warnings.filterwarnings("ignore", category=FastPathWarning, append=True)
del _warnings
