"""The input-independent baseline of any loss, measured: the best constant output.

full-data's gate asks whether the model beats the best predictor that ignores its input.
For a task's own loss that predictor has a formula (train class frequencies under
cross-entropy, the train mean under MSE). For any other loss — Dice, focal, label
smoothing, your own — it is fitted: one constant output (a logit per class, broadcast
over the pixels for dense outputs; a value per target element) trained on train items by
gradient descent on that very loss, then scored on val items. Its val loss is in the
loss's own units, so the gate compares like with like. For the config's own step the
predictor is the model itself trained on inputs zeroed (``zeroed_input_baseline``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from dlsteps.data.batches import batch_size, to_device

MAX_ITEMS = 512  # train and val items each: the constant's loss is an average, this is plenty
STEPS = 300
LR = 0.05
DENSE_LIMIT = 4096  # value targets with more elements share a constant per channel


def _items(ds: Dataset, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    size = len(ds)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(seed)
    indices = torch.randperm(size, generator=gen)[: min(count, size)].tolist()
    loader = DataLoader(Subset(ds, indices), batch_size=len(indices))
    x, y = next(iter(loader))
    return x, y


def _constant_shape(out: torch.Tensor, y: torch.Tensor) -> tuple[int, ...]:
    """Class logits ``[B, C, ...]`` against integer labels: one logit per class,
    broadcast over pixels; otherwise a value per output element (per channel when an
    image-sized output would make the constant as big as an image)."""
    per_item = tuple(out.shape[1:])
    if not y.is_floating_point() and out.ndim > 2:
        return (per_item[0],) + (1,) * (len(per_item) - 1)
    numel = 1
    for side in per_item:
        numel *= side
    if numel > DENSE_LIMIT and len(per_item) > 1:
        return (per_item[0],) + (1,) * (len(per_item) - 1)
    return per_item


def measured_baseline(
    model: nn.Module,
    loss_fn: nn.Module,
    train: Dataset,
    val: Dataset,
    device: torch.device,
    seed: int = 0,
) -> float | None:
    """Val loss of the best constant output, fitted on train with ``loss_fn``."""
    _, ty = _items(train, MAX_ITEMS, seed)
    vx, vy = _items(val, MAX_ITEMS, seed + 1)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(vx[:1].to(device))  # the output's shape, from one val input
    model.train(was_training)
    shape = _constant_shape(out, vy)
    constant = torch.zeros(shape, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([constant], lr=LR)
    ty, vy = ty.to(device), vy.to(device)
    full = (len(ty), *out.shape[1:])
    for _ in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(constant.expand(full), ty)
        if not torch.isfinite(loss):
            return None
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        value = float(loss_fn(constant.expand((len(vy), *out.shape[1:])), vy))
    return value if value == value else None


def zeroed_input_baseline(
    model: nn.Module,
    step: Callable[[nn.Module, Any], tuple[torch.Tensor, Any]],
    train: Iterable[Any],
    val: Iterable[Any],
    inputs: Sequence[str],
    device: torch.device,
    steps: int = STEPS,
) -> float | None:
    """For the config's own step: the val loss of a copy of ``model`` trained ``steps``
    steps (Adam, its default rate) through ``step`` on train batches whose ``inputs`` are
    zeroed, and scored on zeroed val batches. With nothing to read, the copy can only learn
    what is the same for every input: the input-independent predictor, in the step's own
    loss units."""
    net = copy.deepcopy(model)
    net.train()
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad])
    batches = iter(train)
    for _ in range(steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(train)
            batch = next(batches)
        loss, _ = step(net, zeroed(to_device(batch, device), inputs))
        if not torch.isfinite(loss):
            return None
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    net.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in val:
            loss, _ = step(net, zeroed(to_device(batch, device), inputs))
            size = batch_size(batch)
            total, count = total + float(loss) * size, count + size
    value = total / max(count, 1)
    return value if count and math.isfinite(value) else None


def zeroed(batch: Any, inputs: Sequence[str]) -> Any:
    """``batch`` with the parts named by ``inputs`` (dict keys, tuple/list indices) zeroed."""
    if isinstance(batch, Mapping):
        return type(batch)({k: _zero(v) if str(k) in inputs else v for k, v in batch.items()})
    if isinstance(batch, list | tuple):
        parts = [_zero(v) if str(i) in inputs else v for i, v in enumerate(batch)]
        return type(batch)(parts) if not hasattr(batch, "_fields") else type(batch)(*parts)
    return batch


def _zero(value: Any) -> Any:
    return torch.zeros_like(value) if isinstance(value, torch.Tensor) else value
