"""A map-style data set over two in-memory tensors, shared by the built-in data sets."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class TensorPairs(Dataset):
    """``(input, target)`` items from pre-computed tensors.

    ``num_classes`` and ``in_channels`` let dlsteps fill a built-in model's arguments so
    the user does not have to repeat what the data already says.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, num_classes: int | None):
        if len(inputs) != len(targets):
            raise ValueError("inputs and targets differ in length")
        self.inputs = inputs
        self.targets = targets
        self.num_classes = num_classes
        self.in_channels = int(inputs.shape[1])

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]
