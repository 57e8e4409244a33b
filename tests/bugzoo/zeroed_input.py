"""Bug: the model zeroes its input (a mask multiplied in with the wrong polarity)."""

from __future__ import annotations

import torch
from torch import nn
from zoo_common import mlp


class Zeroing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.zeros_like(x)  # the bug: meant ones_like
        return self.net(x * keep)


def model():
    return Zeroing()
