"""Generative (image to image): an L1 regression first, a critic only once it works.

Its ladder replaces augment and scale-up by the adversarial stage. Full-val L1 and PSNR
are measured at the start of every stage too, so the adversarial gate can compare the
generator it continued from with the one it ends with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch

from dlsteps.data.stats import DataStats
from dlsteps.ladder.stages import GENERATIVE_LADDER
from dlsteps.observe.metrics import ImageMetrics, MetricSet
from dlsteps.tasks.base import ValueTask


class Generative(ValueTask):
    name = "generative"
    ladder = GENERATIVE_LADDER
    metrics: ClassVar[Mapping[str, bool]] = {"psnr": True, "l1": False}
    measure_at_start = True
    default_loss = "l1"
    loss_targets = "values"

    def own_sample_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) mean absolute error of each generated image."""
        per = (out.float().reshape(y.shape) - y.float()).abs()
        return per.reshape(per.shape[0], -1).mean(dim=1)

    def baseline_loss(self, stats: DataStats, num_classes: int | None) -> float | None:
        """L1 on val of predicting the train mean image (measured in the data pass: L1 has
        no closed form from moments)."""
        return stats.val.l1_to_train_mean if self.own_loss else None

    def metric_set(
        self, num_classes: int | None, class_names: list[str] | None, stats: DataStats | None
    ) -> MetricSet:
        low, high = stats.val.target_range if stats and stats.val.target_range else (0.0, 1.0)
        return ImageMetrics((low, high))
