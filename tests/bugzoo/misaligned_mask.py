"""Bug: masks paired with the wrong images (image and mask lists sorted differently:
image i gets the mask of image i + 1)."""

from __future__ import annotations

from torch.utils.data import Dataset

from dlsteps.data.shapes import shapes


class OffByOne(Dataset):
    def __init__(self, base) -> None:
        self.images, self.masks = base.inputs, base.targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.masks[(i + 1) % len(self.masks)]  # the bug


def data(seed: int = 0):
    train, val = shapes(num_train=64, num_val=16, size=16, num_classes=3, seed=seed)
    return OffByOne(train), OffByOne(val)
