"""Bug: the val set gets the train transform, a random horizontal flip (of image and
mask together, so each val read is a different sample)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from dlsteps.data.shapes import shapes


class Flipping(Dataset):
    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        if torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x, y


def data(seed: int = 0):
    train, val = shapes(num_train=64, num_val=16, size=16, num_classes=3, seed=seed)
    return Flipping(train), Flipping(val)  # the bug: val must not be augmented
