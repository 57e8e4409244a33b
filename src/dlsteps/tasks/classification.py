"""Classification: one class label per input; logits ``[B, C]``, targets ``[B]``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch

from dlsteps.data.stats import DataStats
from dlsteps.observe.images import classification_picture, on_cpu
from dlsteps.observe.metrics import ClassMetrics, MetricSet
from dlsteps.tasks.labels import LabelTask, predicted


class Classification(LabelTask):
    name = "classification"
    metrics: ClassVar[Mapping[str, bool]] = {"accuracy": True, "f1": True}
    loss_targets = "classes"

    def batch_problem(self, out: torch.Tensor, y: torch.Tensor) -> str | None:
        if out.ndim != 2:
            return f"expected logits [B, C], got {tuple(out.shape)}"
        if y.ndim != 1:
            return f"expected integer targets [B], got {tuple(y.shape)}"
        return super().batch_problem(out, y)

    def metric_set(
        self, num_classes: int | None, class_names: list[str] | None, stats: DataStats | None
    ) -> MetricSet:
        return ClassMetrics(False, num_classes, None, class_names)

    def picture(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        out: torch.Tensor | None,
        class_names: list[str] | None = None,
    ) -> np.ndarray | None:
        cpu = on_cpu(x, y, out)
        if cpu is None or (cpu[2] is not None and cpu[2].dim() != 2) or cpu[1].dim() != 1:
            return None
        x, y, out = cpu
        return classification_picture(
            x, y.long(), None if out is None else predicted(out), class_names
        )
