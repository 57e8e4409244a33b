"""Val metrics of a whole val set, computed with torchmetrics (never hand-written formulas).

A ``MetricSet`` accumulates over every val batch, so mIoU is the IoU of the whole val
set, not a mean of per-batch values. Each task builds the set it reports
(``Task.metric_set``); the names are what gets logged as ``metrics/<name>`` and what
``metrics.primary`` may name:

- ``ClassMetrics``: ``accuracy`` (or ``pixel_accuracy`` for dense labels), ``f1`` (macro),
  for dense labels ``miou`` and ``iou/<class>``, plus a confusion matrix for the report;
  pixels equal to ``ignore_index`` are left out of all of them. Classes that appear in
  neither the targets nor the predictions are left out of the macro averages
  (torchmetrics' behaviour, and sklearn's);
- ``MultilabelMetrics``: ``map`` (mean average precision), ``f1`` (macro), ``ap/<label>``;
- ``ValueMetrics``: ``mae``, ``rmse``;
- ``ImageMetrics``: ``psnr`` (over the val targets' value range) and ``l1``;
- ``TokenMetrics``: ``perplexity`` over every val token and ``bits_per_token``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

if TYPE_CHECKING:
    from torchmetrics import Metric

# torchmetrics is imported where a set is built, on the first val batch: importing it
# pulls in torchvision and scipy (about 2 s), which preflight and ``dlsteps check`` never need.

from dlsteps.data.items import CheckedCollate, IndexedItems

# One process measures the whole val set (rank 0 under DDP): torchmetrics must not wait to
# gather from ranks that never call compute().
ONE_PROCESS: dict[str, Any] = {"sync_on_compute": False}


@dataclass
class MetricValues:
    """One full val pass: scalar metrics by name, and the confusion matrix when there is one."""

    scalars: dict[str, float]
    confusion: list[list[int]] | None = None
    class_names: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "scalars": self.scalars,
            "confusion": self.confusion,
            "class_names": self.class_names,
        }


class MetricSet:
    """torchmetrics objects fed batch by batch, computed once at the end. Subclasses build
    them on the first batch (when the class count and the device are known)."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def _build(self, out: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _all(self) -> list[Metric]:
        return list(self._metrics.values())

    def reset(self) -> None:
        for metric in self._all():
            metric.reset()

    def update(self, out: torch.Tensor, y: torch.Tensor) -> None:
        out = out.detach().float()
        if not self._metrics:
            self._build(out)
            for metric in self._all():
                metric.to(out.device)
        self._update(out, y)

    def _update(self, out: torch.Tensor, y: torch.Tensor) -> None:
        for metric in self._metrics.values():
            metric.update(out.reshape(y.shape), y.float())

    def compute(self) -> MetricValues:
        return MetricValues({name: float(m.compute()) for name, m in self._metrics.items()})


class TokenMetrics(MetricSet):
    """Next-token predictions: ``out`` (B, V, T) logits, ``y`` (B, T) token ids;
    ``perplexity`` (torchmetrics) over every val token and ``bits_per_token``, its log2."""

    def _build(self, out: torch.Tensor) -> None:
        from torchmetrics.text import Perplexity

        self._metrics = {"perplexity": Perplexity(**ONE_PROCESS)}

    def _update(self, out: torch.Tensor, y: torch.Tensor) -> None:
        self._metrics["perplexity"].update(out.transpose(1, 2), y)

    def compute(self) -> MetricValues:
        perplexity = float(self._metrics["perplexity"].compute())
        return MetricValues({"perplexity": perplexity, "bits_per_token": math.log2(perplexity)})


class ClassMetrics(MetricSet):
    """Class labels: ``out`` (B, C) or (B, C, H, W) logits; ``dense`` labels (a class per
    pixel) add mIoU and the IoU of each class."""

    def __init__(
        self,
        dense: bool,
        num_classes: int | None = None,
        ignore_index: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.dense, self.num_classes, self.ignore_index = dense, num_classes, ignore_index
        self.class_names = list(class_names or [])
        self._confusion: Metric | None = None
        self._per_class: Metric | None = None  # dense: IoU of each class

    def _build(self, out: torch.Tensor) -> None:
        from torchmetrics.classification import (
            MulticlassAccuracy,
            MulticlassConfusionMatrix,
            MulticlassF1Score,
            MulticlassJaccardIndex,
        )

        c = self.num_classes or max(2, int(out.shape[1]))  # one channel: a binary logit
        self.num_classes = c
        ign = self.ignore_index
        self._metrics = {
            "pixel_accuracy" if self.dense else "accuracy": MulticlassAccuracy(
                c, average="micro", ignore_index=ign, **ONE_PROCESS
            ),
            "f1": MulticlassF1Score(c, average="macro", ignore_index=ign, **ONE_PROCESS),
        }
        if self.dense:
            self._metrics["miou"] = MulticlassJaccardIndex(
                c, average="macro", ignore_index=ign, **ONE_PROCESS
            )
            self._per_class = MulticlassJaccardIndex(
                c, average="none", ignore_index=ign, **ONE_PROCESS
            )
        self._confusion = MulticlassConfusionMatrix(c, ignore_index=ign, **ONE_PROCESS)

    def _all(self) -> list[Metric]:
        extra = [m for m in (self._confusion, self._per_class) if m is not None]
        return [*self._metrics.values(), *extra]

    def _update(self, out: torch.Tensor, y: torch.Tensor) -> None:
        # (B,) or (B, H, W) class indices; one channel is a binary logit
        pred = out.argmax(dim=1) if out.shape[1] > 1 else (out[:, 0] > 0).long()
        for metric in self._all():
            metric.update(pred, y)

    def compute(self) -> MetricValues:
        scalars = {name: float(m.compute()) for name, m in self._metrics.items()}
        assert self._confusion is not None
        cm = self._confusion.compute()  # (C, C): rows are targets, columns predictions
        if self._per_class is not None:
            scalars.update(self._per_class_iou(self._per_class.compute(), cm))
        names = self.class_names or [str(i) for i in range(self.num_classes or 0)]
        return MetricValues(scalars, cm.int().tolist(), names)

    def _per_class_iou(self, ious: torch.Tensor, cm: torch.Tensor) -> dict[str, float]:
        """``iou/<class>`` of every class present in the targets or predictions; absent
        classes (0/0, which torchmetrics reports as 0) are left out, as miou leaves them out."""
        present = (cm.sum(0) + cm.sum(1)) > 0
        names = self.class_names or [str(i) for i in range(len(ious))]
        return {f"iou/{names[i]}": float(ious[i]) for i in range(len(ious)) if present[i]}


class MultilabelMetrics(MetricSet):
    """Multi-label logits ``(B, C)`` against 0/1 targets ``(B, C)``: ``map`` (mean average
    precision over labels, threshold-free), ``f1`` (macro, at probability 0.5), and the
    AP of each label as ``ap/<label>``."""

    def __init__(self, num_labels: int | None = None, names: Sequence[str] | None = None):
        super().__init__()
        self.num_labels, self.names = num_labels, list(names or [])
        self._per_label: Metric | None = None

    def _build(self, out: torch.Tensor) -> None:
        from torchmetrics.classification import MultilabelAveragePrecision, MultilabelF1Score

        c = self.num_labels or int(out.shape[1])
        self.num_labels = c
        self._metrics = {
            "map": MultilabelAveragePrecision(c, average="macro", **ONE_PROCESS),
            "f1": MultilabelF1Score(c, average="macro", **ONE_PROCESS),
        }
        self._per_label = MultilabelAveragePrecision(c, average="none", **ONE_PROCESS)

    def _all(self) -> list[Metric]:
        return [*self._metrics.values(), *([self._per_label] if self._per_label else [])]

    def _update(self, out: torch.Tensor, y: torch.Tensor) -> None:
        prob, target = out.sigmoid(), y.long()
        for metric in self._all():
            metric.update(prob, target)

    def compute(self) -> MetricValues:
        scalars = {name: float(m.compute()) for name, m in self._metrics.items()}
        assert self._per_label is not None
        names = self.names or [str(i) for i in range(self.num_labels or 0)]
        for i, ap in enumerate(self._per_label.compute().tolist()):
            if ap == ap:  # a label never positive in val has no AP (NaN): left out
                scalars[f"ap/{names[i] if i < len(names) else i}"] = float(ap)
        return MetricValues(scalars, None, names)


class ValueMetrics(MetricSet):
    """Predictions shaped like the targets: mean absolute and root mean squared error."""

    def _build(self, out: torch.Tensor) -> None:
        from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError

        self._metrics = {
            "mae": MeanAbsoluteError(**ONE_PROCESS),
            "rmse": MeanSquaredError(squared=False, **ONE_PROCESS),
        }


class ImageMetrics(MetricSet):
    """Generated images: PSNR over ``data_range`` (the val targets' min..max, fixed so
    every pass compares) and L1."""

    def __init__(self, data_range: tuple[float, float]) -> None:
        super().__init__()
        self.data_range = data_range

    def _build(self, out: torch.Tensor) -> None:
        from torchmetrics.image import PeakSignalNoiseRatio
        from torchmetrics.regression import MeanAbsoluteError

        self._metrics = {
            "psnr": PeakSignalNoiseRatio(data_range=self.data_range, **ONE_PROCESS),
            "l1": MeanAbsoluteError(**ONE_PROCESS),
        }


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    metrics: MetricSet,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
) -> MetricValues:
    """One pass over the whole val loader in eval mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    metrics.reset()
    try:
        with torch.no_grad():
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                with autocast or contextlib.nullcontext():
                    out = model(x)
                metrics.update(out, y)
    finally:
        model.train(was_training)
    return metrics.compute()


def val_loader(
    val: Dataset, batch_size: int, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """The whole val set in order. Its own generator: iterating it never draws from the
    global RNG, so a metric pass does not change the training that follows."""
    return DataLoader(
        IndexedItems(val),
        batch_size=batch_size,
        collate_fn=CheckedCollate("val"),
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(0),
    )
