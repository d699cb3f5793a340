"""zcopy: io.Copy for Python, on the kernel's zero-copy paths, with proof.

>>> import io, zcopy
>>> zcopy.copy(io.BytesIO(), b"hello")
5
"""

from ._aio import acopy
from ._copy import STRICT_ENV, copy, explain
from ._errors import FastPathLost, FastPathWarning
from ._plan import Fallback, Plan, Route
from ._protocol import Handoff
from ._relay import relay, relay_plan
from ._stats import RouteStats, Stats, reset_stats, stats
from ._wrappers import Observed, Section, observe, section

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
