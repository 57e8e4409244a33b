"""The config's own training step: ``step: "package.module:function"``.

The function takes ``(model, batch)`` (the batch as the collate returned it, on the
device) and returns the loss, or ``(loss, outputs)``. The same function serves train and
val, so val loss is the very quantity training lowers; the loop, the gates and the speed
report read only the logged loss, and work unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlsteps.errors import UserError
from dlsteps.plugins import resolve
from dlsteps.train.steps import Updates, output_spread

STEP_CODE = "step_error"


class StepError(UserError):
    """A step that returned no usable loss (None, a non-tensor, a tensor of many values)."""

    code = STEP_CODE


@dataclass(frozen=True)
class StepFunction:
    """The user's ``(model, batch) -> loss | (loss, outputs)`` and the name it has in the
    config, which every message about it quotes."""

    name: str
    fn: Callable[..., Any]

    def __call__(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Any]:
        """The loss (a scalar tensor) and the outputs (None when not returned)."""
        result = self.fn(model, batch)
        outputs = None
        if isinstance(result, tuple | list) and len(result) == 2:
            result, outputs = result
        elif isinstance(result, dict) and "loss" in result:  # Lightning's {"loss": ...} form
            result, outputs = result["loss"], result
        if not isinstance(result, torch.Tensor):
            got = "None (no return statement?)" if result is None else type(result).__name__
            raise StepError(
                f"step: {self.name} returned {got}; it must return the loss as a tensor, "
                "or (loss, outputs)"
            )
        if result.numel() != 1:
            raise StepError(
                f"step: {self.name} returned a loss of shape {tuple(result.shape)}; it must be "
                "one value (reduce it, e.g. .mean())"
            )
        if not result.is_floating_point():
            raise StepError(f"step: {self.name} returned a {result.dtype} loss; it must be float")
        return result.reshape(()), outputs


def resolve_step(name: str) -> StepFunction:
    """``package.module:function`` imported from the user's code (the working directory is
    importable); a name without a colon is a config error."""
    if ":" not in name and not name.startswith("python:"):
        raise UserError(
            f"step: '{name}' is not 'package.module:function' (a function (model, batch) -> "
            "loss | (loss, outputs))",
            code="config_error",
        )
    return StepFunction(name, resolve(name, {}, "step"))


class UserStep(Updates):
    """One optimizer step through the user's function: its loss, backward, update."""

    def __init__(
        self,
        step: StepFunction,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        autocast: contextlib.AbstractContextManager,
        grad_clip: float | None = None,
        scaler: torch.amp.GradScaler | None = None,
        logged: Callable[[], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        """``logged()``: what the step logged itself (a LightningModule's self.log)."""
        super().__init__(model, optimizer, autocast, grad_clip, scaler)
        self.step, self.logged = step, logged

    def loss(self, batch: Any) -> torch.Tensor:
        """The user's loss without the update (also the probe of a refused allocation)."""
        with self.autocast:
            return self.step(self.model, batch)[0]

    def __call__(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        loss, norm, _ = self.update(self.loss(batch))
        return loss, norm, self.logged() if self.logged is not None else {}


class UserEval:
    """The val forward through the user's function in eval mode, without gradients; the
    output spread from the outputs it returns (none logged when it returns none)."""

    def __init__(
        self, step: StepFunction, model: nn.Module, autocast: contextlib.AbstractContextManager
    ) -> None:
        self.step, self.model, self.autocast = step, model, autocast

    def __call__(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
        self.model.eval()
        try:
            with torch.no_grad(), self.autocast:
                loss, outputs = self.step(self.model, batch)
        finally:
            self.model.train()
        if isinstance(outputs, torch.Tensor) and outputs.ndim >= 1:
            return loss, output_spread(outputs), {}
        return loss, None, {}
