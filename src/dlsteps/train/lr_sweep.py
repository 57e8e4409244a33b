"""A learning-rate range test: one train step per rate, the rate growing geometrically.

The model starts from the state it had, trains on one source (the overfit-few batch, or
the train stream) while the LR rises from ``low`` to ``high``, and stops early when the
loss turns non-finite or climbs far above its best; its weights, optimizer and RNG are
restored exactly afterwards. The suggestion is the rate where the smoothed loss fell
fastest (steepest descent against log LR) before its minimum, moved back by the moving
average's lag.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlsteps.data.batches import to_device
from dlsteps.train.checkpoint import rng_state, set_rng_state
from dlsteps.train.steps import TrainStep

Batch = tuple[torch.Tensor, torch.Tensor]
STOP_FACTOR = 4.0  # the sweep ends when the smoothed loss is this far above its best
SMOOTHING = 0.9  # EMA of the loss across rates (the curve is noisy step to step)


@dataclass
class SweepCurve:
    lrs: list[float]
    losses: list[float]  # raw loss of each step (NaN/inf kept as they came)
    smoothed: list[float]
    suggestion: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "lrs": self.lrs,
            "losses": [v if math.isfinite(v) else str(v) for v in self.losses],
            "smoothed": [v if math.isfinite(v) else str(v) for v in self.smoothed],
            "suggestion": self.suggestion,
        }


def rates(low: float, high: float, steps: int) -> list[float]:
    return np.geomspace(low, high, steps).tolist()


def lr_sweep(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    make_step: Callable[[], TrainStep],
    batches: Iterator[Batch],
    lrs: list[float],
    device: torch.device,
) -> SweepCurve:
    """Run the sweep; ``make_step()`` builds the train step over ``model`` and
    ``optimizer``. Every state it touches is restored before it returns."""
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = rng_state()
    was_training = model.training
    step = make_step()
    losses: list[float] = []
    smoothed: list[float] = []
    best = math.inf
    ema = None
    model.train()
    try:
        for lr in lrs:
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, _, _ = step(to_device(next(batches), device))
            value = float(loss.detach())
            losses.append(value)
            if not math.isfinite(value):
                smoothed.append(math.inf)
                break
            ema = value if ema is None else SMOOTHING * ema + (1 - SMOOTHING) * value
            debiased = ema  # the first value seeds the average: no bias correction needed
            smoothed.append(debiased)
            best = min(best, debiased)
            if debiased > STOP_FACTOR * best and len(smoothed) > 5:
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        set_rng_state(saved_rng)
        model.train(was_training)
    used = lrs[: len(losses)]
    return SweepCurve(used, losses, smoothed, suggest(used, smoothed))


def suggest(lrs: list[float], smoothed: list[float]) -> float | None:
    """The rate of steepest descent of the smoothed loss against log LR, before the
    minimum; None when the loss never fell."""
    values = np.asarray(smoothed, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.sum() < 5:
        return None
    low = int(np.argmin(np.where(finite, values, np.inf)))
    if low < 2 or not values[low] < values[0]:
        return None
    logs = np.log(np.maximum(values[: low + 1], 1e-12))
    slopes = np.gradient(logs, np.log(np.asarray(lrs[: low + 1])))[:low]  # not the minimum
    # the moving average trails the raw loss by about beta / (1 - beta) rates: step back
    lag = round(SMOOTHING / (1 - SMOOTHING))
    return float(lrs[max(0, int(np.argmin(slopes)) - lag)])
