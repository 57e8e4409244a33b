"""Optimizer and LR schedule from ``optim``; the overfit stages ask for them plain.

``optim.name`` is ``adam``, ``adamw``, ``sgd`` or any optimizer class by its dotted name
(``torch.optim.RAdam``); ``optim.scheduler`` is ``none``, ``cosine``, ``step`` or any
``torch.optim.lr_scheduler`` class by its dotted name, with ``args``. Every schedule is
stepped once per optimizer step (so ``StepLR``'s ``step_size`` counts steps, not epochs).
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dlsteps.config.schema import OPTIMIZERS, SCHEDULERS, OptimConfig
from dlsteps.errors import ConfigError, ModelError, did_you_mean

# schedulers that need the length of the run, filled from the stage's steps when unset
_LENGTH_ARGS = ("total_steps", "T_max", "total_iters")


def resolve_class(dotted: str, base: type, key: str) -> type:
    """``package.module.Class`` imported, and a subclass of ``base``; else a config error
    naming ``key``."""
    module_name, _, attr = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import module '{module_name}' ({exc})") from exc
    found = getattr(module, attr, None)
    if not (inspect.isclass(found) and issubclass(found, base)):
        names = [n for n, v in vars(module).items() if inspect.isclass(v) and issubclass(v, base)]
        raise ConfigError(
            f"{key}: '{dotted}' is not a {base.__module__}.{base.__name__} class."
            f"{did_you_mean(attr, names)}"
        )
    return found


def optimizer_class(cfg: OptimConfig) -> type[torch.optim.Optimizer] | None:
    """The dotted optimizer class, checked; None for the short names."""
    if cfg.name in OPTIMIZERS:
        return None
    return resolve_class(cfg.name, torch.optim.Optimizer, "optim.name")


def scheduler_class(cfg: OptimConfig) -> type | None:
    """The dotted scheduler class, checked; None for the short names."""
    name = cfg.scheduler.name
    if name in SCHEDULERS:
        return None
    cls = resolve_class(name, torch.optim.lr_scheduler.LRScheduler, "optim.scheduler.name")
    if cls is torch.optim.lr_scheduler.ReduceLROnPlateau or "metrics" in _params(cls.step):
        raise ConfigError(
            f"optim.scheduler.name: {name} steps on a metric; dlsteps steps the schedule every "
            "optimizer step without one. Choose a schedule of steps (OneCycleLR, "
            "CosineAnnealingLR, StepLR, ...)"
        )
    return cls


def check_optim(cfg: OptimConfig) -> None:
    """Resolve the dotted names once where a run starts, so a typo exits before training."""
    optimizer_class(cfg)
    scheduler_class(cfg)


def make_optimizer(model: nn.Module, cfg: OptimConfig, plain: bool) -> torch.optim.Optimizer:
    """``plain`` drops weight decay (the overfit stages switch every regularizer off), also
    one given in ``optim.args``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelError("model.name: the model has no trainable parameters (all frozen)")
    cls = optimizer_class(cfg) or _SHORT[cfg.name]
    kwargs: dict[str, Any] = {"lr": cfg.lr}
    if cfg.name == "sgd":
        kwargs["momentum"] = cfg.momentum
    if "weight_decay" in _params(cls.__init__):
        kwargs["weight_decay"] = cfg.weight_decay
    kwargs.update(cfg.args)
    if plain and "weight_decay" in kwargs:
        kwargs["weight_decay"] = 0.0
    return _built(cls, params, kwargs)


_SHORT: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


def _built(cls: type, first: Any, kwargs: Mapping[str, Any], key: str = "optim.args") -> Any:
    try:
        return cls(first, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {cls.__name__}({_shown(kwargs)}) failed: {exc}") from exc


def _shown(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _params(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int, plain: bool
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Warm-up then decay, stepped every optimizer step; ``plain`` means constant LR."""
    name = cfg.scheduler.name
    if plain or (name == "none" and cfg.warmup_steps == 0):
        return None
    cls = scheduler_class(cfg)
    if cls is not None:
        return _dotted_schedule(optimizer, cls, cfg, total_steps)
    warmup = cfg.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name == "cosine":
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if name == "step":
            return cfg.gamma ** ((step - warmup) // cfg.step_size)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _dotted_schedule(
    optimizer: torch.optim.Optimizer, cls: type, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A torch scheduler class with ``optim.scheduler.args``; its length argument
    (``total_steps``, ``T_max``, ``total_iters``) defaults to the stage's steps after
    warm-up, and ``OneCycleLR``'s ``max_lr`` to ``optim.lr``. Warm-up comes first."""
    warmup = cfg.warmup_steps
    args = dict(cfg.scheduler.args)
    accepted = _params(cls.__init__)
    for length in _LENGTH_ARGS:
        if length in accepted and length not in args:
            args[length] = max(1, total_steps - warmup)
    if "max_lr" in accepted and "max_lr" not in args:
        args["max_lr"] = cfg.lr
    schedule = _built(cls, optimizer, args, "optim.scheduler.args")
    if not warmup:
        return schedule
    ramp = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, schedule], milestones=[warmup])


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout probability to 0; returns how many layers were changed."""
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            module.p = 0.0
            changed += 1
    return changed
