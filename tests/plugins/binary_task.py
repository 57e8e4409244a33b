"""A sixth task written outside the library: binary classification with one logit per
sample and BCE. One file and one ``register_task`` call; no library file changes.

    task: binary
    data: {name: "binary_task:two_blobs"}
    model: {name: "binary_task:one_logit"}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from torchmetrics.classification import BinaryAccuracy

from dlsteps.data.stats import DataStats
from dlsteps.observe.metrics import ONE_PROCESS, MetricSet
from dlsteps.tasks import register_task
from dlsteps.tasks.base import Task


class _Accuracy(MetricSet):
    def _build(self, out: torch.Tensor) -> None:
        self._metrics = {"accuracy": BinaryAccuracy(**ONE_PROCESS)}

    def _update(self, out: torch.Tensor, y: torch.Tensor) -> None:
        self._metrics["accuracy"].update(out.sigmoid(), y.int())


class Binary(Task):
    """Targets 0.0 / 1.0, one logit per sample (``[B]``)."""

    name = "binary"
    metrics: ClassVar[Mapping[str, bool]] = {"accuracy": True}

    def loss(self, class_weights=None) -> nn.Module:
        return nn.BCEWithLogitsLoss()

    def expected_init_loss(self, num_outputs: int) -> float | None:
        return math.log(2)  # a fresh model says 0.5 for everything

    def baseline_loss(self, stats: DataStats, num_classes: int | None) -> float | None:
        p = min(max(stats.train.target_mean[0], 1e-6), 1 - 1e-6) if stats.train.target_mean else 0.5
        q = stats.val.target_mean[0] if stats.val.target_mean else 0.5
        return -(q * math.log(p) + (1 - q) * math.log(1 - p))

    def metric_set(self, num_classes, class_names, stats) -> MetricSet:
        return _Accuracy()


register_task("binary", Binary)


def two_blobs(seed: int = 0, n_train: int = 128, n_val: int = 32) -> tuple[Dataset, Dataset]:
    def split(n: int, offset: int) -> TensorDataset:
        g = torch.Generator().manual_seed(seed * 7 + offset)
        y = torch.randint(0, 2, (n,), generator=g).float()
        x = torch.randn(n, 8, generator=g) + 2.0 * y[:, None]
        return TensorDataset(x, y)

    return split(n_train, 0), split(n_val, 1)


class OneLogit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # (B,) logits


def one_logit() -> nn.Module:
    return OneLogit()
