"""Bug: ``.squeeze()`` on the output drops every size-1 dimension, the batch of 1 included:
a batch of one sample comes out as [C] instead of [1, C]."""

from __future__ import annotations

import torch
from torch import nn
from zoo_common import mlp


class Squeezing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).unsqueeze(-1).squeeze()  # the bug: squeeze(-1) was meant


def model():
    return Squeezing()
