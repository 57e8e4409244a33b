"""Bug: labels shuffled against inputs (inputs and labels sorted by different keys)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset
from zoo_common import blob_tensors


def data(seed: int = 0):
    def split(n: int, s: int) -> TensorDataset:
        x, y = blob_tensors(n, seed=seed, split=s)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(s))
        return TensorDataset(x, y[perm])  # the bug

    return split(256, 0), split(256, 1)
