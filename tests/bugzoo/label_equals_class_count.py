"""Bug: labels run 1..C (1-based ids from a CSV) for a model with C outputs."""

from __future__ import annotations

from torch.utils.data import TensorDataset
from zoo_common import blob_tensors


def data(seed: int = 0):
    def split(n: int, s: int) -> TensorDataset:
        x, y = blob_tensors(n, seed=seed, split=s)
        return TensorDataset(x, y + 1)  # the bug

    return split(256, 0), split(64, 1)
