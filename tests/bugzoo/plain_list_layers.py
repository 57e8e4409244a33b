"""Bug: hidden layers kept in a plain Python list instead of nn.ModuleList: the optimizer
never sees them (and they are not saved in checkpoints)."""

from __future__ import annotations

import torch
from torch import nn


class ListNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = [nn.Linear(16, 64), nn.Linear(64, 64)]  # the bug: nn.ModuleList
        self.head = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.head(x)


def model():
    return ListNet()
