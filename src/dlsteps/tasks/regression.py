"""Regression: float targets, predictions shaped like them, mean squared error.

A fresh model predicting about 0 has an MSE near the mean squared target; the baseline
predicts the train mean target everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch

from dlsteps.data.stats import DataStats
from dlsteps.judge.diagnoses import Diagnosis
from dlsteps.observe.metrics import MetricSet, ValueMetrics
from dlsteps.tasks.base import ProbeFacts, ValueTask

# MSE at init: a fresh model predicts ~0, so the loss is about E[y²] (+ output variance).
INIT_MSE_FACTOR = 10.0


class Regression(ValueTask):
    name = "regression"
    metrics: ClassVar[Mapping[str, bool]] = {"rmse": False, "mae": False}
    default_loss = "mse"
    loss_targets = "values"

    def baseline_loss(self, stats: DataStats, num_classes: int | None) -> float | None:
        """MSE on val of predicting the train mean target (per element when it is small;
        another loss's baseline is measured: ``losses.baseline``)."""
        if not (self.own_loss and stats.train.target_mean and stats.val.target_mean):
            return None
        mu = np.asarray(stats.train.target_mean)
        vm, vsq = np.asarray(stats.val.target_mean), np.asarray(stats.val.target_sq_mean)
        return float(np.mean(vsq - 2 * mu * vm + mu**2))

    def baseline_metric(self, stats: DataStats, metric: str) -> tuple[float, float] | None:
        """The train mean predicted everywhere: its RMSE on val, with the standard error of
        an RMSE over this many val items (normal errors: rmse / sqrt(2 n))."""
        mse = self.baseline_loss(stats, None)
        if metric != "rmse" or mse is None or mse < 0:
            return None
        rmse = math.sqrt(mse)
        return rmse, rmse / math.sqrt(2 * max(stats.val.read, 1))

    def check_init(
        self,
        loss: float,
        out: torch.Tensor,
        stats: DataStats | None,
        probe: ProbeFacts | None = None,
    ) -> list[Diagnosis]:
        found = super().check_init(loss, out, stats, probe)
        if found or not self.own_loss or stats is None or not stats.train.target_sq_mean:
            return found  # another loss is checked against its measured init reference
        sq = float(sum(stats.train.target_sq_mean) / len(stats.train.target_sq_mean))
        limit = INIT_MSE_FACTOR * sq + 1.0
        if loss <= limit:
            return []
        return [
            Diagnosis(
                "unexpected_init_loss",
                f"MSE at init is {loss:.4g}; a fresh model predicting about 0 should give "
                f"about the mean squared target, {sq:.4g} (flagged above {limit:.3g}): the "
                "outputs are far too large. Normalise the inputs (zero mean, unit "
                "variance) and check the last layer's initialisation.",
            )
        ]

    def metric_set(
        self, num_classes: int | None, class_names: list[str] | None, stats: DataStats | None
    ) -> MetricSet:
        return ValueMetrics()
