"""Correct building blocks the zoo's cases start from (each case breaks one thing).

``blobs``: 4 Gaussian clusters in 16 dimensions (classification); ``waves``: a smooth
function of 8 inputs (regression); ``mlp``: a two-layer perceptron. Everything is
generated from the seed in memory, in milliseconds.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset


def blob_tensors(
    n: int, num_classes: int = 4, dim: int = 16, seed: int = 0, split: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster centres from ``seed``; samples from ``(seed, split)`` so splits differ."""
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(seed)) * 1.5
    g = torch.Generator().manual_seed(seed * 101 + split + 1)
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = centres[y] + torch.randn(n, dim, generator=g)
    return x, y


def blobs(
    n_train: int = 256, n_val: int = 64, num_classes: int = 4, dim: int = 16, seed: int = 0
) -> tuple[Dataset, Dataset]:
    return (
        TensorDataset(*blob_tensors(n_train, num_classes, dim, seed, 0)),
        TensorDataset(*blob_tensors(n_val, num_classes, dim, seed, 1)),
    )


def wave_tensors(n: int, dim: int = 8, seed: int = 0, split: int = 0):
    w = torch.randn(dim, generator=torch.Generator().manual_seed(seed)) / dim**0.5
    g = torch.Generator().manual_seed(seed * 101 + split + 1)
    x = torch.randn(n, dim, generator=g)
    y = torch.sin(2 * x @ w) + 0.5 * x[:, 0] + 0.05 * torch.randn(n, generator=g)
    return x, y[:, None]  # (N, 1) targets: the model predicts (B, 1)


def waves(n_train: int = 256, n_val: int = 64, dim: int = 8, seed: int = 0):
    return (
        TensorDataset(*wave_tensors(n_train, dim, seed, 0)),
        TensorDataset(*wave_tensors(n_val, dim, seed, 1)),
    )


def mlp(in_features: int = 16, hidden: int = 64, num_classes: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
