"""Bug: the encoder's features are detached before the head, so the encoder never learns
(a leftover from feature extraction, or a .detach() added to silence an error)."""

from __future__ import annotations

import torch
from torch import nn


class Detached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(16, 64), nn.ReLU())
        self.head = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).detach())  # the bug


def model():
    return Detached()
