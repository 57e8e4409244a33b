"""dlsteps: walk a deep-learning project up a ladder of gated stages.

``dlsteps.climb(model, train, val, task=...)`` climbs the ladder from Python
(``dlsteps.api``); ``dlsteps.ladder.runner.run_ladder`` is the config-driven entry
point behind the CLI, ``dlsteps.ladder.stages`` re-judges a stage from its logbook.
Importing ``dlsteps`` loads no torch: ``climb`` is imported on first use.
"""

from __future__ import annotations

from typing import Any

from dlsteps.version import __version__

__all__ = ["__version__", "climb"]


def __getattr__(name: str) -> Any:
    if name in ("climb", "Summary", "StageResult"):
        from dlsteps import api

        return getattr(api, name)
    raise AttributeError(f"module 'dlsteps' has no attribute {name!r}")
