"""Bug: a view that folds samples together: ``x.view(-1, 32)`` on inputs of 16 features
turns a batch of B samples into B / 2 rows of two samples each."""

from __future__ import annotations

import torch
from torch import nn


class Folding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.view(-1, 32))  # the bug: 32 is two samples' worth


def model():
    return Folding()
