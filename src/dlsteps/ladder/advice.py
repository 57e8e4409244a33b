"""Advice that was tried before it is given: the learning rates an overfit stage could have
used, each trained from the stage's own initial weights on its own batch.

When an overfit stage fails with ``loss_not_decreasing``, ``loss_plateau`` or
``diverging``, a learning-rate range test on the same batch proposes rates; each is then
trained for the stage's steps through the same loop (``engine.fit``, nothing logged) until
the gate's own rule is met. Only a rate seen reaching the gate is advised; when none does,
the answer is that the learning rate is not the cause.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlsteps.config import StagePlan
from dlsteps.data.loading import FixedBatch
from dlsteps.logbook.book import Logbook
from dlsteps.train.callbacks import EarlyStop
from dlsteps.train.engine import FitSetup, StopReason, fit
from dlsteps.train.lr_sweep import SweepCurve, lr_sweep, rates
from dlsteps.train.optim import make_optimizer
from dlsteps.train.steps import SupervisedStep

# The headlines a different learning rate can cure.
TRY_CODES = ("loss_not_decreasing", "loss_plateau", "diverging")
SWEEP = (1e-7, 1.0, 100)  # lowest rate, highest rate, steps of the range test
MAX_CANDIDATES = 3


@dataclass
class Tried:
    """The rates trained and what each did; ``text`` is what the diagnosis adds."""

    curve: SweepCurve
    results: list[tuple[float, int | None]]  # (lr, steps to the gate, or None)
    steps: int
    seconds: float

    @property
    def fixed(self) -> tuple[float, int] | None:
        return next(((lr, n) for lr, n in self.results if n is not None), None)

    def text(self, configured: float) -> str:
        tried = ", ".join(f"{lr:.2g}" for lr, _ in self.results)
        if (hit := self.fixed) is not None:
            lr, steps = hit
            return (
                f"Tried from the same initial weights on the same batch: lr {lr:.2g} reaches "
                f"the gate in {steps} steps (optim.lr is {configured:g}); set optim.lr: "
                f"{lr:.2g} for this stage."
            )
        return (
            f"Tried from the same initial weights on the same batch: no learning rate in the "
            f"range helped (lr {tried} after an LR range test over {SWEEP[0]:g}..{SWEEP[1]:g}; "
            f"none reached the gate in {self.steps} steps), so the rate is not the cause: "
            "look at the data and the model."
        )


def tried_rates(
    plan: StagePlan,
    model: nn.Module,
    initial: dict[str, Any],
    source: FixedBatch,
    loss_fn: nn.Module,
    device: torch.device,
    reached: Callable[[Sequence[float]], bool],
    steps: int,
) -> Tried | None:
    """Sweep, then train each candidate rate for ``steps`` from ``initial``; the model is
    left as it was found. None when the model's parameters are no longer those it started
    with (a layer created during training), so it cannot start again."""
    started = time.perf_counter()
    if set(model.state_dict()) != set(initial):
        return None
    final = copy.deepcopy(model.state_dict())
    cfg = plan.config
    try:
        model.load_state_dict(initial)
        optimizer = make_optimizer(model, cfg.optim, plain=True)

        def make_step() -> SupervisedStep:
            return SupervisedStep(model, optimizer, loss_fn, contextlib.nullcontext())

        curve = lr_sweep(model, optimizer, make_step, source.batches(), rates(*SWEEP), device)
        results = []
        for lr in candidates(curve.suggestion, cfg.optim.lr):
            model.load_state_dict(initial)
            results.append(
                (lr, _steps_to_gate(plan, model, lr, source, loss_fn, device, reached, steps))
            )
            if results[-1][1] is not None:
                break
    finally:
        model.load_state_dict(final)
    return Tried(curve, results, steps, time.perf_counter() - started)


def candidates(suggestion: float | None, configured: float) -> list[float]:
    """The range test's rate and its neighbours a factor 3 away (or, with no suggestion,
    the configured rate 10x up and down), never the configured rate itself."""
    base = (
        [suggestion, suggestion / 3, suggestion * 3]
        if suggestion
        else [configured * 10, configured / 10]
    )
    out: list[float] = []
    for lr in base:
        if lr > 0 and abs(math.log(lr / configured)) > math.log(1.5) and lr not in out:
            out.append(float(f"{lr:.2g}"))
    return out[:MAX_CANDIDATES]


def _steps_to_gate(
    plan: StagePlan,
    model: nn.Module,
    lr: float,
    source: FixedBatch,
    loss_fn: nn.Module,
    device: torch.device,
    reached: Callable[[Sequence[float]], bool],
    steps: int,
) -> int | None:
    """Train the stage's batch at ``lr`` through the loop until the gate's rule is met."""
    cfg = plan.config
    optimizer = make_optimizer(model, replace_lr(cfg.optim, lr), plain=True)
    step = SupervisedStep(model, optimizer, loss_fn, contextlib.nullcontext(), cfg.optim.grad_clip)
    gate = plan.knobs.gate
    setup = FitSetup(
        model=model,
        step=step,
        optimizer=optimizer,
        scheduler=None,
        loss_fn=loss_fn,
        train=source,
        val=source,
        total_steps=steps,
        device=device,
        val_every=steps + 1,  # no val batch: only the train loss decides
        flush_every=min(cfg.log.flush_every, gate.window),
        callbacks=[EarlyStop(gate.window, reached)],
    )
    result = fit(setup, Logbook.null())
    return result.last_step if result.reason is StopReason.EARLY_STOP else None


def replace_lr(optim: Any, lr: float) -> Any:
    """``optim`` (a frozen config) with another learning rate."""
    return optim.model_copy(update={"lr": lr})
