"""Bug: binary masks saved as 0/255 (what many annotation tools write) with the default
``ignore_index: 255``: every foreground pixel is ignored, the model learns "background"."""

from __future__ import annotations

from torch.utils.data import Dataset

from dlsteps.data.shapes import shapes


class Mask255(Dataset):
    def __init__(self, base) -> None:
        self.images, self.masks = base.inputs, base.targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], (self.masks[i] > 0).long() * 255  # the bug: 255, not 1


def data(seed: int = 0):
    train, val = shapes(num_train=64, num_val=16, size=16, num_classes=2, seed=seed)
    return Mask255(train), Mask255(val)
