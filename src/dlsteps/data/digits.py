"""``digits``: the real handwritten 8×8 digits that scikit-learn ships (1,797 images).

No download: the file is part of the scikit-learn package. The split is stratified and
seeded, so train and val never share an image.
"""

from __future__ import annotations

import numpy as np
import torch

from dlsteps.data.tensors import TensorPairs


def digits(val_fraction: float = 0.2, seed: int = 0) -> tuple[TensorPairs, TensorPairs]:
    """Return ``(train, val)``: inputs ``(1, 8, 8)`` in [-1, 1], targets int64 in [0, 10)."""
    from sklearn.datasets import load_digits

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    val_idx = []
    for cls in range(10):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        val_idx.extend(members[: round(len(members) * val_fraction)])
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[val_idx] = True
    inputs = torch.from_numpy((images[:, None] - 0.5) / 0.5)
    targets = torch.from_numpy(labels)
    return (
        TensorPairs(inputs[~is_val], targets[~is_val], 10),
        TensorPairs(inputs[is_val], targets[is_val], 10),
    )
