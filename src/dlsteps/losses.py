"""The loss chosen by ``task``: cross-entropy (classification/segmentation), MSE, L1."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def make_loss(
    task: str, ignore_index: int = 255, class_weights: Sequence[float] | None = None
) -> nn.Module:
    if task in ("classification", "segmentation"):
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        return nn.CrossEntropyLoss(
            weight=weight, ignore_index=ignore_index if task == "segmentation" else -100
        )
    if task == "regression":
        return nn.MSELoss()
    if task == "generative":
        return nn.L1Loss()
    raise ValueError(f"unknown task {task!r}")


def expected_init_loss(task: str, num_outputs: int) -> float | None:
    """Loss of a freshly initialised model that predicts 'don't know': ln C for C classes."""
    if task in ("classification", "segmentation") and num_outputs > 1:
        return math.log(num_outputs)
    return None
