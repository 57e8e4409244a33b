"""Bug: regression targets in raw units (values around 10^4), never standardised."""

from __future__ import annotations

from torch.utils.data import TensorDataset
from zoo_common import wave_tensors


def data(seed: int = 0):
    def split(n: int, s: int) -> TensorDataset:
        x, y = wave_tensors(n, seed=seed, split=s)
        return TensorDataset(x, 2e4 + 5e3 * y)  # the bug: no standardisation

    return split(256, 0), split(64, 1)
