"""A LightningModule's own hooks inside dlsteps' loop: ``training_step``,
``validation_step``, ``configure_optimizers`` and ``self.log``.

No Trainer runs: dlsteps' engine steps the module's optimizer (and scheduler, at its
``interval`` and ``frequency``), calls ``training_step(batch, batch_idx)`` for the loss
and ``validation_step`` for the val loss (what it returns, else the one value it logged
with "loss" in its name, else ``training_step``'s loss without gradients). What the
module logs with ``self.log``/``self.log_dict`` becomes ``lightning/<name>`` rows of the
logbook (``scalars.jsonl`` and TensorBoard), beside dlsteps' own curves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dlsteps.errors import ConfigError
from dlsteps.train.user_step import StepError, StepFunction

LOG_PREFIX = "lightning/"


class LogCapture:
    """Stands in for ``LightningModule.log``/``log_dict`` (which need a Trainer): keeps
    the values logged since the last ``take``; every keyword (prog_bar, on_step, ...) is
    accepted and left to Lightning's meaning."""

    def __init__(self) -> None:
        self.values: dict[str, torch.Tensor] = {}

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        tensor = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        self.values[name] = tensor.detach().float().reshape(-1)[0]

    def log_dict(self, values: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        for name, value in values.items():
            self.log(name, value)

    def take(self) -> dict[str, torch.Tensor]:
        """What was logged since the last take, as logbook tags (``lightning/<name>``)."""
        taken, self.values = self.values, {}
        return {f"{LOG_PREFIX}{k}": v for k, v in taken.items()}


def attach_log(module: nn.Module) -> LogCapture:
    """Route the module's ``self.log`` into a ``LogCapture`` (on this instance only)."""
    capture = LogCapture()
    object.__setattr__(module, "log", capture.log)
    object.__setattr__(module, "log_dict", capture.log_dict)
    return capture


def training_step(module: nn.Module) -> StepFunction:
    """``training_step(batch, batch_idx)`` as a step function, batch_idx counting calls."""
    calls = iter(range(1 << 62))

    def step(model: nn.Module, batch: Any) -> Any:
        return model.training_step(batch, next(calls))

    return StepFunction(f"{type(module).__name__}.training_step", step)


class LightningEval:
    """The val loss of a LightningModule and what ``validation_step`` logged."""

    def __init__(
        self,
        module: nn.Module,
        capture: LogCapture,
        autocast: contextlib.AbstractContextManager,
    ) -> None:
        self.module, self.capture, self.autocast = module, capture, autocast
        self.train_step = training_step(module)
        self.calls = 0

    def __call__(self, batch: Any) -> tuple[torch.Tensor, None, dict[str, torch.Tensor]]:
        self.module.eval()
        try:
            with torch.no_grad(), self.autocast:
                returned = self.module.validation_step(batch, self.calls)
                logged = self.capture.take()
                loss = _loss_of(returned, logged)
                if loss is None:  # nothing to read: the training loss, without gradients
                    loss, _ = self.train_step(self.module, batch)
                    self.capture.take()
        finally:
            self.module.train()
        self.calls += 1
        return loss, None, logged


def _loss_of(returned: Any, logged: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    if isinstance(returned, torch.Tensor) and returned.numel() == 1:
        return returned.float().reshape(())
    if isinstance(returned, Mapping) and isinstance(returned.get("loss"), torch.Tensor):
        return returned["loss"].float().reshape(())
    losses = [v for k, v in logged.items() if "loss" in k.lower()]
    return losses[0].reshape(()) if len(losses) == 1 else None


class EveryN:
    """A scheduler stepped every ``n`` optimizer steps (Lightning's ``interval: epoch``
    and ``frequency``); its state is the scheduler's and the count."""

    def __init__(self, scheduler: Any, n: int) -> None:
        self.scheduler, self.n, self.count = scheduler, max(1, n), 0

    def step(self) -> None:
        self.count += 1
        if self.count % self.n == 0:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict(), "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.count = state["count"]


def lightning_optimizers(
    module: nn.Module, steps_per_epoch: int, plain: bool
) -> tuple[torch.optim.Optimizer, EveryN | None, list[str]]:
    """The optimizer and scheduler ``configure_optimizers`` returns (an optimizer, a list
    of one, ``(optimizers, schedulers)`` or a dict with ``lr_scheduler``). A plain stage
    (overfit) turns weight decay and the schedule off, as for any other model."""
    name = f"{type(module).__name__}.configure_optimizers"
    optimizer, spec = _parsed(module.configure_optimizers(), name)
    notes: list[str] = []
    if plain:
        decayed = [g for g in optimizer.param_groups if g.get("weight_decay", 0)]
        for group in decayed:
            group["weight_decay"] = 0.0
        if decayed:
            notes.append(f"weight decay off in {len(decayed)} of {name}'s parameter groups")
        if spec is not None:
            notes.append(f"{name}'s LR schedule off (constant LR)")
        return optimizer, None, notes
    if spec is None:
        return optimizer, None, notes
    scheduler, interval, frequency = spec
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise ConfigError(f"{name}: ReduceLROnPlateau (it needs a monitored metric) is not run")
    every = frequency * (steps_per_epoch if interval == "epoch" else 1)
    notes.append(f"{type(scheduler).__name__} stepped every {every} steps ({interval})")
    return optimizer, EveryN(scheduler, every), notes


def _parsed(conf: Any, name: str) -> tuple[torch.optim.Optimizer, tuple[Any, str, int] | None]:
    scheduler: Any = None
    if isinstance(conf, Mapping):
        optimizer, scheduler = conf.get("optimizer"), conf.get("lr_scheduler")
    elif isinstance(conf, list | tuple) and len(conf) == 2 and isinstance(conf[0], list | tuple):
        optimizers, schedulers = conf
        if len(optimizers) != 1 or len(schedulers) > 1:
            raise ConfigError(f"{name}: several optimizers or schedulers; dlsteps steps one")
        optimizer, scheduler = optimizers[0], (schedulers[0] if schedulers else None)
    elif isinstance(conf, list | tuple):
        if len(conf) != 1:
            raise ConfigError(f"{name}: {len(conf)} optimizers; dlsteps steps one")
        optimizer = conf[0]
    else:
        optimizer = conf
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise StepError(
            f"{name} returned {type(optimizer).__name__}; it must return an optimizer, or a "
            "dict with 'optimizer' (and 'lr_scheduler')"
        )
    if scheduler is None:
        return optimizer, None
    if isinstance(scheduler, Mapping):
        return optimizer, (
            scheduler["scheduler"],
            scheduler.get("interval", "epoch"),
            int(scheduler.get("frequency", 1)),
        )
    return optimizer, (scheduler, "epoch", 1)
