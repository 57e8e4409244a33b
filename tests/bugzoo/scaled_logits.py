"""Bug: logits multiplied by a tiny constant (a temperature in the wrong units)."""

from __future__ import annotations

import torch
from torch import nn
from zoo_common import mlp


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * 1e-8  # the bug


def model():
    return Scaled()
