"""Optimizer and LR schedule from ``optim``; the overfit stages ask for them plain."""

from __future__ import annotations

import math

import torch
from torch import nn

from dlsteps.config.schema import OptimConfig
from dlsteps.errors import ModelError


def make_optimizer(model: nn.Module, cfg: OptimConfig, plain: bool) -> torch.optim.Optimizer:
    """``plain`` drops weight decay (the overfit stages switch every regularizer off)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelError("model.name: the model has no trainable parameters (all frozen)")
    wd = 0.0 if plain else cfg.weight_decay
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int, plain: bool
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Warm-up then cosine/step decay as one LambdaLR; ``plain`` means constant LR."""
    if plain or (cfg.scheduler == "none" and cfg.warmup_steps == 0):
        return None
    warmup = cfg.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "cosine":
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if cfg.scheduler == "step":
            return cfg.gamma ** ((step - warmup) // cfg.step_size)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout probability to 0; returns how many layers were changed."""
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            module.p = 0.0
            changed += 1
    return changed
