"""Bug: a slow __getitem__ (a sleep standing in for decoding big files on every read)."""

from __future__ import annotations

import time

from torch.utils.data import Dataset
from zoo_common import blob_tensors


class Sleepy(Dataset):
    def __init__(self, n: int, seed: int, split: int, delay: float) -> None:
        self.x, self.y = blob_tensors(n, seed=seed, split=split)
        self.delay = delay

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        time.sleep(self.delay)  # the bug
        return self.x[i], self.y[i]


def data(seed: int = 0, delay: float = 0.004):
    return Sleepy(128, seed, 0, delay), Sleepy(32, seed, 1, 0.0)
