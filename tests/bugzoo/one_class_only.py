"""Bug: a filter kept only the samples of one class (e.g. a glob that matched one folder):
4 classes declared, train holds class 0 alone."""

from __future__ import annotations

from torch.utils.data import TensorDataset
from zoo_common import blob_tensors


def data(seed: int = 0):
    x, y = blob_tensors(512, seed=seed, split=0)
    keep = y == 0  # the bug
    train = TensorDataset(x[keep], y[keep])
    train.num_classes = 4
    return train, TensorDataset(*blob_tensors(64, seed=seed, split=1))
