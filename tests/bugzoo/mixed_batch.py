"""Bug: a transpose meant for the feature axes swaps the batch with them, and a reshape
puts the shape back: every output row now mixes values of all samples, with the right
output shape."""

from __future__ import annotations

import torch
from torch import nn


class Mixing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(16, 64)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(64, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)  # (B, 64)
        h = h.t().reshape(x.shape[0], 64)  # the bug: (64, B) read back as (B, 64)
        return self.head(h)


def model():
    return Mixing()
