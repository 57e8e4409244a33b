"""Bug: a hand-written normalisation divides by the std across the batch, which is NaN
for a batch of one sample (overfit-one's batch)."""

from __future__ import annotations

import torch
from torch import nn


class BatchStd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 64), nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x))
        h = (h - h.mean(0)) / (h.std(0) + 1e-5)  # the bug: std of one sample is NaN
        return self.fc2(h)


def model():
    return BatchStd()
