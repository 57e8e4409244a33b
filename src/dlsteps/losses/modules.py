"""The built-in loss modules, each taking logits (or predictions) and targets as the task
shapes them, and leaving ``ignore_index`` pixels out where the task has one.

Shapes: class labels ``out [B, C]`` / ``[B, C, H, W]`` against integer targets ``[B]`` /
``[B, H, W]``; one output channel (``C = 1``) is a binary logit against targets in
{0, 1}; multi-label ``out [B, C]`` against ``y [B, C]`` in {0, 1}; values ``out`` shaped
like ``y``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NO_IGNORE = -100  # torch's own default ignore_index: a value no label takes


def _weights(values: Sequence[float] | None) -> torch.Tensor | None:
    return torch.tensor(list(values), dtype=torch.float32) if values else None


def binary_view(
    out: torch.Tensor, y: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One output channel against labels: logits and float targets of the same shape, and
    the mask of the elements that count (not ``ignore_index``)."""
    if out.ndim == y.ndim + 1 and out.shape[1] == 1:
        out = out[:, 0]  # [B, 1, H, W] -> [B, H, W]; [B, 1] -> [B]
    keep = y != ignore_index if not y.is_floating_point() else torch.ones_like(y, dtype=torch.bool)
    target = torch.where(keep, y, torch.zeros_like(y)).to(out.dtype)
    return out, target, keep


class BCEWithLogits(nn.Module):
    """Binary cross-entropy on logits: multi-label ``[B, C]``, or one output channel
    against 0/1 labels (binary segmentation or classification); ``class_weights`` ``[w0,
    w1]`` weight background and foreground elements."""

    def __init__(
        self,
        pos_weight: float | Sequence[float] | None = None,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = NO_IGNORE,
    ) -> None:
        super().__init__()
        pw = [pos_weight] if isinstance(pos_weight, int | float) else pos_weight
        self.register_buffer("pos_weight", _weights(pw), persistent=False)
        self.register_buffer("class_weights", _weights(class_weights), persistent=False)
        self.ignore_index = ignore_index

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits, target, keep = binary_view(out, y, self.ignore_index)
        pos_weight = self.pos_weight
        if pos_weight is not None and logits.ndim == 2 and pos_weight.numel() > 1:
            pos_weight = pos_weight.view(1, -1)  # one per label
        each = F.binary_cross_entropy_with_logits(
            logits, target, reduction="none", pos_weight=pos_weight
        )
        weight = keep.to(each.dtype)
        if self.class_weights is not None:
            weight = weight * self.class_weights[target.long()]
        return (each * weight).sum() / weight.sum().clamp_min(1e-12)


class Dice(nn.Module):
    """1 − the soft Dice coefficient over the whole batch, averaged over classes (softmax
    over C channels) or of the foreground (one channel, sigmoid). ``smooth`` keeps a class
    absent from the batch at a finite value."""

    def __init__(self, smooth: float = 1.0, ignore_index: int = NO_IGNORE) -> None:
        super().__init__()
        self.smooth, self.ignore_index = smooth, ignore_index

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if out.shape[1] == 1:
            logits, target, keep = binary_view(out, y, self.ignore_index)
            prob = torch.sigmoid(logits) * keep
            target = target * keep
            dims = tuple(range(prob.ndim))
            inter = (prob * target).sum(dims)
            total = prob.sum(dims) + target.sum(dims)
            return 1 - (2 * inter + self.smooth) / (total + self.smooth)
        keep = (y != self.ignore_index).unsqueeze(1)  # [B, 1, ...]
        prob = out.float().softmax(dim=1) * keep  # [B, C, ...]
        labels = torch.where(keep[:, 0], y, torch.zeros_like(y))
        onehot = F.one_hot(labels.long(), out.shape[1]).movedim(-1, 1) * keep  # [B, C, ...]
        dims = (0, *range(2, prob.ndim))
        inter = (prob * onehot).sum(dims)  # [C]
        total = prob.sum(dims) + onehot.sum(dims)
        return 1 - ((2 * inter + self.smooth) / (total + self.smooth)).mean()


class DiceCE(nn.Module):
    """Cross-entropy plus Dice (``ce_weight`` × CE + ``dice_weight`` × Dice): CE's
    per-pixel gradients with Dice's indifference to class imbalance."""

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = NO_IGNORE,
    ) -> None:
        super().__init__()
        self.ce = nn.CrossEntropyLoss(
            weight=_weights(class_weights),
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
        )
        self.dice = Dice(smooth, ignore_index)
        self.ce_weight, self.dice_weight = ce_weight, dice_weight

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.ce_weight * self.ce(out, y) + self.dice_weight * self.dice(out, y)


class Focal(nn.Module):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by ``(1 − p_t)^gamma``, so easy
    examples count less. Softmax over C channels, sigmoid for one channel or multi-label
    targets; ``alpha`` weights the classes (softmax) or the positives (sigmoid)."""

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = NO_IGNORE,
    ) -> None:
        super().__init__()
        self.gamma, self.ignore_index = gamma, ignore_index
        self.alpha = alpha if isinstance(alpha, int | float) else None
        per_class = class_weights or (alpha if isinstance(alpha, Sequence) else None)
        self.register_buffer("per_class", _weights(per_class), persistent=False)

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.is_floating_point() or out.shape[1] == 1:
            logits, target, keep = binary_view(out, y, self.ignore_index)
            ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            p_t = torch.exp(-ce)
            each = (1 - p_t) ** self.gamma * ce
            if self.alpha is not None:
                each = each * (self.alpha * target + (1 - self.alpha) * (1 - target))
            weight = keep.to(each.dtype)
            return (each * weight).sum() / weight.sum().clamp_min(1e-12)
        log_p = F.log_softmax(out.float(), dim=1)
        keep = y != self.ignore_index
        labels = torch.where(keep, y, torch.zeros_like(y)).long()
        log_pt = log_p.gather(1, labels.unsqueeze(1)).squeeze(1)  # [B, ...]
        each = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        weight = keep.to(each.dtype)
        if self.per_class is not None:
            weight = weight * self.per_class[labels]
        return (each * weight).sum() / weight.sum().clamp_min(1e-12)


class FunctionLoss(nn.Module):
    """A user's loss function ``fn(outputs, targets, **args)`` as a module."""

    def __init__(self, fn, args: dict) -> None:
        super().__init__()
        self.fn, self.args = fn, dict(args)

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(out, y, **self.args)
