"""Bug: the targets are the inputs themselves, not the next tokens (the slice for y is
the same as for x), so the model learns to copy its input."""

from __future__ import annotations

import torch
from lm_text import BLOCK, corpus
from torch.utils.data import Dataset


class Blocks(Dataset):
    def __init__(self, ids: torch.Tensor, num_classes: int) -> None:
        self.ids, self.num_classes, self.block_size = ids, num_classes, BLOCK

    def __len__(self) -> int:
        return (len(self.ids) - 1) // BLOCK

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.ids[i * BLOCK : (i + 1) * BLOCK]
        return chunk, chunk  # the bug: y should be ids[i * BLOCK + 1 : (i + 1) * BLOCK + 1]


def data():
    train, val = corpus()
    return Blocks(train.ids, train.num_classes), Blocks(val.ids, val.num_classes)
