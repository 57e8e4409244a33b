"""Control: a correct classification pipeline on a heavily imbalanced set (85 % of the
samples in one of 4 classes, in train and val alike). Nothing is broken: every gate must
pass and no label rule may fire; the imbalance is what class weights are for."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

PRIOR = torch.tensor([0.85, 0.05, 0.05, 0.05])


def _split(n: int, seed: int, split: int, dim: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    centres = torch.randn(len(PRIOR), dim, generator=torch.Generator().manual_seed(seed)) * 1.5
    g = torch.Generator().manual_seed(seed * 101 + split + 1)
    y = torch.multinomial(PRIOR, n, replacement=True, generator=g)  # (n,) mostly class 0
    return centres[y] + torch.randn(n, dim, generator=g), y


def imbalanced_blobs(
    n_train: int = 512, n_val: int = 192, seed: int = 0
) -> tuple[Dataset, Dataset]:
    return TensorDataset(*_split(n_train, seed, 0)), TensorDataset(*_split(n_val, seed, 1))
