"""Bug: the head is created in forward() on the first call (a "lazy" layer): a model built
fresh for a stage gets its optimizer before the head exists, so the head is never
updated."""

from __future__ import annotations

import torch
from torch import nn


class LazyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 64), nn.ReLU())
        self.head: nn.Linear | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if self.head is None:
            self.head = nn.Linear(64, 4).to(x.device)  # the bug: after the optimizer
        return self.head(h)


def model():
    return LazyHead()
