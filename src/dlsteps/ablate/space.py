"""Which variants an ablation tries, and how one variant becomes a config.

A variant is a mapping of dotted config keys to values (``{"optim.lr": 0.01,
"model.args.width": 32}``), written into the raw config exactly like ``--set`` would.
Variants come from a grid (``--grid KEY=V1,V2`` or ``ablate.grid``: every combination,
in the order given) or from a search (``ablate.search``: ranges and choices drawn by an
Optuna sampler, one trial at a time).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import yaml

from dlsteps.config import LoadedConfig, build_config, set_dotted
from dlsteps.errors import ConfigError

Params = dict[str, Any]
Scalar = (str, int, float, bool, type(None))

# YAML 1.1 (PyYAML) reads ``1e-3`` as a string; on a command line it always means a number.
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def as_number(value: Any) -> Any:
    """``"1e-3"`` → ``0.001``; every other value unchanged."""
    if isinstance(value, str) and _EXPONENT.match(value.strip()):
        return float(value)
    return value


def parse_grid_option(text: str) -> tuple[str, list[Any]]:
    """``optim.lr=1e-2,1e-3`` → ``("optim.lr", [0.01, 0.001])``; values are YAML-typed."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,..., e.g. optim.lr=1e-2,1e-3")
    try:
        parsed = yaml.safe_load(f"[{values}]")
    except yaml.YAMLError as exc:
        raise ConfigError(f"--grid {text!r}: the values are not valid YAML") from exc
    return key.strip(), [as_number(v) for v in parsed]


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[Params]:
    """Every combination, the last key varying fastest (the order trials are run in)."""
    for key, values in grid.items():
        if bad := [v for v in values if not isinstance(v, Scalar)]:
            raise ConfigError(
                f"grid {key}: {bad[0]!r} is not a number, string or boolean; vary a list "
                "through a key inside it or through a stage overlay instead"
            )
    keys = list(grid)
    combos = itertools.product(*([as_number(v) for v in grid[k]] for k in keys))
    return [dict(zip(keys, combo, strict=True)) for combo in combos]


def search_corners(search: Mapping[str, Mapping[str, Any]]) -> list[Params]:
    """A few variants spanning every range (its ends, every choice): enough to find a key
    or a value the config refuses before any trial starts."""
    corners: list[Params] = []
    for key, spec in search.items():
        values = spec["choices"] if spec.get("choices") is not None else [spec["low"], spec["high"]]
        corners += [{key: v} for v in values]
    return corners


def suggest(trial: optuna.Trial, search: Mapping[str, Mapping[str, Any]]) -> Params:
    """Draw one variant from the search space (an enqueued trial gets its fixed values)."""
    params: Params = {}
    for key, spec in search.items():
        if spec.get("choices") is not None:
            params[key] = trial.suggest_categorical(key, spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            params[key] = trial.suggest_int(key, spec["low"], spec["high"], log=spec["log"])
        else:
            low, high = float(spec["low"]), float(spec["high"])
            params[key] = trial.suggest_float(key, low, high, log=spec["log"])
    return params


def fixed(trial: optuna.Trial, grid: Mapping[str, Sequence[Any]]) -> Params:
    """The enqueued grid point of ``trial``, recorded as its Optuna params."""
    return {key: trial.suggest_categorical(key, list(values)) for key, values in grid.items()}


def variant_raw(raw: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the raw config with every dotted key of ``params`` set, as ``--set`` does."""
    out = copy.deepcopy(dict(raw))
    out.pop("ablate", None)  # a trial is an ordinary run
    for key, value in params.items():
        set_dotted(out, key, value, "ablate key")
    return out


def variant_config(
    raw: Mapping[str, Any], params: Mapping[str, Any], source: str | None
) -> LoadedConfig:
    """The validated config of one variant; a bad key or value names the variant."""
    where = f"{source or '<built-in default>'} with {_describe(params)}"
    return build_config(variant_raw(raw, params), where, source=source)


def check_variants(raw: Mapping[str, Any], variants: Sequence[Params], source: str | None) -> None:
    """Validate every variant up front: a typo in a key fails now, not in trial 7."""
    for params in variants:
        variant_config(raw, params, source)


def _describe(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "no changes"
