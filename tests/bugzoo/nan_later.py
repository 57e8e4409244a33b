"""Bug: a log of a learned quantity that training drives below zero after a while: the
loss is fine at first, then turns NaN at a later step inside the module that takes the
log."""

from __future__ import annotations

import torch
from torch import nn


class LogScale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.tensor(2.0))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.log(h + self.shift)  # the bug: nothing keeps h + shift above 0


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.Tanh())
        self.scale = LogScale()
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.scale(self.body(x)))


def model():
    return Net()
