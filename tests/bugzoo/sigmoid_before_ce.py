"""Bug: forward() ends in a functional torch.sigmoid, and cross-entropy applies softmax on
top: probabilities fed to a loss that expects logits."""

from __future__ import annotations

import torch
from torch import nn
from zoo_common import mlp


class SigmoidHead(nn.Module):
    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.net = mlp(num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))  # the bug


def model(num_classes: int = 4):
    return SigmoidHead(num_classes)
