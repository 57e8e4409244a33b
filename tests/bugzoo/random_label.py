"""Bug: __getitem__ draws a new random label on every read (e.g. a label-noise
"augmentation" applied at read time, or a sampler bug picking a random row)."""

from __future__ import annotations

import random

from torch.utils.data import Dataset
from zoo_common import blob_tensors


class RandomLabel(Dataset):
    def __init__(self, n: int, seed: int, split: int) -> None:
        self.x, self.y = blob_tensors(n, seed=seed, split=split)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], random.randrange(4)  # the bug: not self.y[i]


def data(seed: int = 0):
    return RandomLabel(256, seed, 0), RandomLabel(64, seed, 1)
