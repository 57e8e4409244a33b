"""Bug: one image in ten was not resized, so items do not all have one shape and cannot
be stacked into a batch."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from dlsteps.data.shapes import shapes


class Ragged(Dataset):
    num_classes = 3
    in_channels = 3

    def __init__(self, base) -> None:
        self.images, self.masks = base.inputs, base.targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image, mask = self.images[i], self.masks[i]
        if i % 10 == 3:  # the bug: these kept their original size
            image = torch.nn.functional.pad(image, (0, 4, 0, 4))
            mask = torch.nn.functional.pad(mask, (0, 4, 0, 4))
        return image, mask


def data(seed: int = 0):
    train, val = shapes(num_train=64, num_val=16, size=16, num_classes=3, seed=seed)
    return Ragged(train), Ragged(val)
