"""Bug: the val set is a slice of the train set (a split done on the wrong list)."""

from __future__ import annotations

from torch.utils.data import Subset
from zoo_common import blobs


def data(seed: int = 0):
    train, _ = blobs(seed=seed)
    return train, Subset(train, range(64))  # the bug
