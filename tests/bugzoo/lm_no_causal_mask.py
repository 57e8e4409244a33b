"""Bug: a transformer language model whose self-attention has no causal mask (an encoder
layer called without ``is_causal``/``mask``): every position sees the tokens it is to
predict, and the loss falls without the model learning to predict anything."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, num_classes: int, block_size: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(num_classes, 32)
        self.positions = nn.Embedding(block_size, 32)
        self.layer = nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(32, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
        x = self.layer(x)  # the bug: no causal mask
        return self.head(x).transpose(1, 2)  # [B, V, T]


def model(num_classes: int, block_size: int) -> nn.Module:
    return Encoder(num_classes, block_size)
