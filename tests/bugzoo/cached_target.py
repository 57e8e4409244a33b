"""Bug: ``__getitem__`` returns a cached target tensor and changes it in place on every
read (an augmentation applied to the cache): two reads return the same object, so
comparing them without a copy sees no difference."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from zoo_common import wave_tensors


class Drifting(Dataset):
    def __init__(self, n: int, seed: int, split: int) -> None:
        self.x, self.y = wave_tensors(n, seed=seed, split=split)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        target = self.y[i]  # a view into the cache
        target.add_(0.01 * torch.randn(1))  # the bug: in place, on the cache
        return self.x[i], target


def data(seed: int = 0):
    return Drifting(256, seed, 0), Drifting(64, seed, 1)
