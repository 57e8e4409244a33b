"""Train steps: what one optimizer step does, given a batch. The loop (``engine.fit``)
calls one and logs what it returns; other training schemes (the adversarial stage) bring
their own object with the same call signature.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# a batch on the device (``(inputs, targets)`` for supervised steps, any structure for the
# user's own step) -> (loss, gradient norm, {tag: value}), all device tensors
TrainStep = Callable[[Any], tuple[torch.Tensor, torch.Tensor, dict]]
# a val batch on the device -> (val loss, output spread or None, {tag: value}), device tensors
Evaluate = Callable[[Any], tuple[torch.Tensor, torch.Tensor | None, dict]]


class Updates:
    """Backward and optimizer step on a loss: what every step that computes a loss shares
    (gradient clipping, fp16 loss scaling). Returns device tensors only (no host sync)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        autocast: contextlib.AbstractContextManager,
        grad_clip: float | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.autocast, self.grad_clip, self.scaler = autocast, grad_clip, scaler
        self.params = [p for p in model.parameters() if p.requires_grad]

    def update(self, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Backward and optimizer step on ``loss`` (scaled under fp16): what any step that
        computes its own loss shares."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            norm = grad_norm(self.params, self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            norm = grad_norm(self.params, self.grad_clip)
            self.optimizer.step()
        return loss, norm, {}


class SupervisedStep(Updates):
    """One optimizer step of plain supervised training: forward, loss, backward, update.

    Returns the loss, the gradient norm, and any extra ``{tag: value}`` to log. Other
    training schemes (the adversarial stage, the config's own ``step``) supply their own
    step object with the same call signature; the loop stays the same.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        autocast: contextlib.AbstractContextManager,
        grad_clip: float | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        super().__init__(model, optimizer, autocast, grad_clip, scaler)
        self.loss_fn = loss_fn

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The step's loss without the update (also what a refused allocation is probed
        with at smaller batch sizes)."""
        x, y = batch
        with self.autocast:
            return self.loss_fn(self.model(x), y)

    def __call__(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        return self.update(self.loss(batch))


class SupervisedEval:
    """The val forward of supervised training: the model in eval mode on the inputs, the
    loss against the targets, and how much the output varies across the batch."""

    def __init__(
        self, model: nn.Module, loss_fn: nn.Module, autocast: contextlib.AbstractContextManager
    ) -> None:
        self.model, self.loss_fn, self.autocast = model, loss_fn, autocast

    def __call__(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        self.model.eval()
        try:
            with torch.no_grad(), self.autocast:
                out = self.model(x)
                loss = self.loss_fn(out, y)
        finally:
            self.model.train()
        return loss, output_spread(out), {}


def grad_norm(params: list[nn.Parameter], clip: float | None) -> torch.Tensor:
    """Total L2 norm of the gradients (clipping them to ``clip`` when set), on the device."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device)
    if clip is not None:
        return nn.utils.clip_grad_norm_(params, clip)
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack(norms))


def output_spread(out: torch.Tensor) -> torch.Tensor:
    """Std across the batch relative to the overall std: ~0 when outputs ignore inputs."""
    flat = out.detach().float().reshape(out.shape[0], -1)  # (B, everything else)
    if flat.shape[0] < 2:
        return torch.full((), float("nan"), device=out.device)
    # note: written out because std(dim=0) is ~10x slower on CPU (0.7 ms for a batch of
    # 16 32x32x4 logits, more than 2% of a step of configs/seg.yaml)
    centred = flat - flat.mean(dim=0)
    across_batch = (centred.square().sum(dim=0) / (flat.shape[0] - 1)).sqrt().mean()
    return across_batch / (flat.std() + 1e-12)
