"""Bug: a few inputs hold NaN (missing values in the source table, never imputed)."""

from __future__ import annotations

from torch.utils.data import TensorDataset
from zoo_common import blob_tensors


def data(seed: int = 0):
    x, y = blob_tensors(256, seed=seed, split=0)
    x[[17, 90, 201], 3] = float("nan")  # the bug
    return TensorDataset(x, y), TensorDataset(*blob_tensors(64, seed=seed, split=1))
