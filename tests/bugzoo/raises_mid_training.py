"""Bug: the model raises on some batches only (here: a branch for an input statistic that
the first batches never hit), at a later training step."""

from __future__ import annotations

import torch
from torch import nn
from zoo_common import mlp


class Brittle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.training and self.calls > 40:
            raise RuntimeError("index 7 is out of bounds for the lookup table")  # the bug
        return self.net(x)


def model():
    return Brittle()
