"""Segmentation: a class label per pixel; logits ``[B, C, H, W]``, masks ``[B, H, W]``.

Pixels equal to ``data.ignore_index`` are left out of the loss, the label checks and
every metric; geometric augmentation moves the mask with the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from dlsteps.data.stats import DataStats
from dlsteps.observe.images import on_cpu, segmentation_picture
from dlsteps.observe.metrics import ClassMetrics, MetricSet
from dlsteps.tasks.labels import LabelTask, predicted


class Segmentation(LabelTask):
    name = "segmentation"
    metrics: ClassVar[Mapping[str, bool]] = {"miou": True, "pixel_accuracy": True, "f1": True}
    dense_targets = True
    unit = "pixels"
    loss_targets = "masks"

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index

    @classmethod
    def from_config(cls, config: Any) -> Segmentation:
        task = cls(config.data.ignore_index)
        task.configured(config)
        return task

    def batch_problem(self, out: torch.Tensor, y: torch.Tensor) -> str | None:
        if out.ndim != 4:
            return f"expected logits [B, C, H, W], got {tuple(out.shape)}"
        if y.ndim != 3 or tuple(y.shape[1:]) != tuple(out.shape[2:]):
            return (
                f"mask {tuple(y.shape)} does not match logits {tuple(out.shape)} (need [B, H, W])"
            )
        return super().batch_problem(out, y)

    def metric_set(
        self, num_classes: int | None, class_names: list[str] | None, stats: DataStats | None
    ) -> MetricSet:
        return ClassMetrics(True, num_classes, self.ignore_index, class_names)

    def picture(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        out: torch.Tensor | None,
        class_names: list[str] | None = None,
    ) -> np.ndarray | None:
        cpu = on_cpu(x, y, out)
        if cpu is None or (cpu[2] is not None and cpu[2].dim() != 4) or cpu[1].dim() != 3:
            return None
        x, y, out = cpu
        pred = None if out is None else predicted(out)
        return segmentation_picture(x, y.long(), pred, self.ignore_index)
