"""``dlsteps.climb``: the ladder from a notebook or a script, with objects instead of names.

    summary = dlsteps.climb(model, train, val, task="classification", loss=None,
                            run_dir=None, to_stage="full-data", optim={"lr": 3e-4})
    summary.status, summary.stages   # "passed", [StageResult("preflight", "passed"), ...]

The objects stand in the config under names valid in this process (``plugins.give``);
everything else is the config as in YAML, validated the same way, and the run
directory is the one ``dlsteps run`` writes (so ``dlsteps report RUN_DIR`` works on it).
Each training stage starts from a copy of ``model`` as it was handed over (its weights
are never changed in place), so every stage measures what it alone learned.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from dlsteps.config import build_config
from dlsteps.errors import ConfigError
from dlsteps.judge.diagnoses import Diagnosis
from dlsteps.ladder.runner import RunOptions, run_ladder
from dlsteps.plugins import give


@dataclass(frozen=True)
class StageResult:
    """One stage's verdict: ``status`` (passed, failed, skipped, error, interrupted,
    pruned), its diagnoses and key figures."""

    name: str
    status: str
    diagnoses: list[Diagnosis] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class Summary:
    """What ``summary.json`` says: the overall ``status``, one ``StageResult`` per stage
    that ran, the run directory, and the exit code ``dlsteps run`` would give."""

    status: str
    stages: list[StageResult]
    run_dir: Path
    exit_code: int
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def __getitem__(self, stage: str) -> StageResult:
        for result in self.stages:
            if result.name == stage:
                return result
        raise KeyError(f"no stage {stage!r} in this run: {[s.name for s in self.stages]}")

    @classmethod
    def of(cls, summary: Mapping[str, Any], exit_code: int) -> Summary:
        stages = [
            StageResult(
                s["name"],
                s["status"],
                [Diagnosis.from_json(d) for d in s.get("diagnoses", [])],
                dict(s.get("figures") or {}),
                s.get("seconds"),
            )
            for s in summary["stages"]
        ]
        return cls(summary["status"], stages, Path(summary["run_dir"]), exit_code, dict(summary))


class _Copies:
    """A model function that hands out a fresh copy of the model it was given."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self) -> nn.Module:
        return copy.deepcopy(self.model)


def climb(
    model: nn.Module | Callable[..., nn.Module],
    train: Dataset,
    val: Dataset,
    *,
    task: str,
    loss: nn.Module | Callable[..., Any] | str | Mapping[str, Any] | None = None,
    step: Callable[..., Any] | str | None = None,
    run_dir: str | Path | None = None,
    to_stage: str | None = None,
    quiet: bool = False,
    **config_keys: Any,
) -> Summary:
    """Climb the ladder with ``model`` on ``train``/``val`` and return the summary.

    ``model`` is a module (copied for every stage) or a function/class building one (it
    gets ``in_channels``/``num_classes`` from the data where it declares them); ``loss`` a
    module, a function ``(outputs, targets) -> loss``, a built-in name or ``{name, args}``
    (None: the task's own); ``step`` your own training step ``(model, batch) -> loss |
    (loss, outputs)`` or its ``package.module:function`` name. ``to_stage`` is ``run
    --to``; ``config_keys`` are the config's keys nested as in YAML (``optim={"lr":
    3e-4}``, ``stages={"full-data": {"epochs": 5}}``). A bad config or bad data raises a
    ``dlsteps.errors.UserError`` naming the key."""
    raw: dict[str, Any] = copy.deepcopy(config_keys)
    for key, given in (("data", "train and val"), ("model", "model")):
        if "name" in (raw.get(key) or {}):
            raise ConfigError(f"climb(): {key}.name is set by the {given} you pass; drop it")
    raw["task"] = task
    raw.setdefault("name", "climb")
    raw["data"] = {**(raw.get("data") or {}), "name": give("data", lambda: (train, val))}
    build = _Copies(model) if isinstance(model, nn.Module) else model
    raw["model"] = {**(raw.get("model") or {}), "name": give("model", build)}
    if isinstance(loss, str):
        raw["loss"] = {"name": loss}
    elif isinstance(loss, Mapping):
        raw["loss"] = dict(loss)
    elif loss is not None:
        raw["loss"] = {"name": give("loss", loss)}
    if step is not None:
        raw["step"] = step if isinstance(step, str) else give("step", step)
    loaded = build_config(raw, "dlsteps.climb()")
    options = RunOptions(
        to_stage=to_stage, run_dir=Path(run_dir) if run_dir is not None else None, quiet=quiet
    )
    summary, code = run_ladder(loaded, options)
    return Summary.of(summary, code)
