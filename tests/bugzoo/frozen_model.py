"""Bug: the whole forward runs under torch.no_grad() (copied from an inference script)."""

from __future__ import annotations

import torch
from torch import nn
from zoo_common import mlp


class Frozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # the bug
            return self.net(x)


def model():
    return Frozen()
