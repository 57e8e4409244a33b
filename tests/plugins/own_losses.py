"""Losses of a user's own, as ``loss: {name: "own_losses:...", args: {...}}`` names them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def smoothed_ce(out: torch.Tensor, y: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """A plain function: cross-entropy with label smoothing, ``fn(outputs, targets, **args)``."""
    return F.cross_entropy(out, y, label_smoothing=smoothing)


class ScaledCE(nn.Module):
    """A class: instantiated with ``args``; ``scale`` multiplies the loss (units differ from
    cross-entropy's, so no formula for the init loss or the baseline applies)."""

    def __init__(self, scale: float = 10.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.scale * F.cross_entropy(out, y)


def hot_logits(in_channels: int = 3, num_classes: int = 3) -> nn.Module:
    """A classifier whose fresh logits are far too large (x 50): a broken init."""
    net = nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )
    with torch.no_grad():
        net[-1].weight.mul_(200.0)
        net[-1].bias.normal_(0, 20.0)
    return net
