"""Bug: targets of shape (N,) while the model predicts (B, 1)."""

from __future__ import annotations

from torch.utils.data import TensorDataset
from zoo_common import wave_tensors


def data(seed: int = 0):
    def split(n: int, s: int) -> TensorDataset:
        x, y = wave_tensors(n, seed=seed, split=s)
        return TensorDataset(x, y[:, 0])  # the bug: squeezed targets

    return split(256, 0), split(64, 1)
