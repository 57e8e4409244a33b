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

from dlsteps.errors import ModelError

# (inputs, targets) -> (loss, gradient norm, {tag: value}), all device tensors
TrainStep = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, dict]]


class SupervisedStep:
    """One optimizer step of plain supervised training: forward, loss, backward, update.

    Returns device tensors only (no host sync): the loss, the gradient norm, and any
    extra ``{tag: value}`` to log. Other training schemes (the adversarial stage) supply
    their own step object with the same call signature; the loop stays the same.
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
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.autocast, self.grad_clip, self.scaler = autocast, grad_clip, scaler
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        with self.autocast:
            loss = self.loss_fn(self.model(x), y)
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


TrainStep = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, dict]]


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


# torch's words when a batchnorm layer sees one value per channel in training mode
BATCHNORM_ONE_VALUE = (
    ". A batchnorm layer saw a single value per channel: one sample (overfit-one) whose "
    "feature map has shrunk to 1x1. Start without batchnorm (model.args.batchnorm: false "
    "for torchvision:/timm: models), or feed larger images (data.args.size)"
)


class FirstStepGuard:
    """Wraps a train step: a failure on the very first batch is the model not fitting the
    data (wrong input channels, wrong target shape), reported with the batch's shapes.
    Later failures keep their traceback; the first batch went through, so they are not
    a plain mismatch."""

    def __init__(self, step: Any) -> None:
        self.step = step
        self.first = True

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        if not self.first:
            return self.step(x, y)
        try:
            out = self.step(x, y)
        except Exception as exc:
            raise ModelError(
                f"the first training step raised {type(exc).__name__} on an input batch "
                f"{tuple(x.shape)} ({x.dtype}) with targets {tuple(y.shape)} ({y.dtype}): {exc}"
                + (BATCHNORM_ONE_VALUE if "more than 1 value per channel" in str(exc) else "")
            ) from exc
        self.first = False
        return out

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("step", "first"):
            raise AttributeError(name)
        return getattr(self.step, name)
