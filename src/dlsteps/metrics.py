"""Val metrics of a whole val set, computed with torchmetrics (never hand-written formulas).

One ``MetricSet`` per task accumulates over every val batch, so mIoU is the IoU of the
whole val set, not a mean of per-batch values. Names are what gets logged as
``metrics/<name>`` and what ``metrics.primary`` may name:

- classification: ``accuracy``, ``f1`` (macro), plus a confusion matrix for the report;
- segmentation: ``miou``, ``iou/<class>``, ``pixel_accuracy``, ``f1`` (macro), confusion
  matrix; pixels equal to ``data.ignore_index`` are left out of all of them;
- regression: ``mae``, ``rmse``;
- generative: ``psnr``, ``l1`` (measured by ``image_quality``; named here for ``primary``).

Classes that appear in neither the targets nor the predictions of the val set are left
out of the macro averages (torchmetrics' behaviour, and sklearn's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError

from dlsteps.errors import ConfigError, did_you_mean
from dlsteps.logbook import Curves

# The scalar metrics of each task; the first is the default primary metric.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1"),
    "segmentation": ("miou", "pixel_accuracy", "f1"),
    "regression": ("rmse", "mae"),
    "generative": ("psnr", "l1"),  # logged by image_quality, not here
}
# One process measures the whole val set (rank 0 under DDP): torchmetrics must not wait to
# gather from ranks that never call compute().
ONE_PROCESS: dict[str, Any] = {"sync_on_compute": False}
HIGHER_IS_BETTER = {
    "accuracy": True,
    "f1": True,
    "miou": True,
    "pixel_accuracy": True,
    "rmse": False,
    "mae": False,
    "psnr": True,
    "l1": False,
}


@dataclass(frozen=True)
class Primary:
    """The metric the augment and scale-up gates compare."""

    name: str
    higher_is_better: bool

    def figure(self, value: float) -> dict[str, Any]:
        """The ``primary_metric`` entry of a verdict's figures (a contract)."""
        return {"name": self.name, "value": value, "higher_is_better": self.higher_is_better}

    def from_curves(self, curves: Curves) -> dict[str, Any] | None:
        """The figure from the stage's last ``metrics/<name>`` row (the stage-end pass), so
        a run and a later ``dlsteps report`` of it agree; None when it was never logged."""
        curve = curves.get_curve(f"metrics/{self.name}")
        return self.figure(curve.last) if len(curve) else None


def primary_metric(task: str, configured: str = "auto") -> Primary:
    """Resolve ``metrics.primary`` for ``task``; an unknown name is a config error."""
    names = TASK_METRICS[task]
    name = names[0] if configured == "auto" else configured
    if name not in names:
        raise ConfigError(
            f"metrics.primary: '{configured}' is not a {task} metric."
            f"{did_you_mean(configured, names)} Choose one of: auto, {', '.join(names)}"
        )
    return Primary(name, HIGHER_IS_BETTER[name])


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
    """The torchmetrics objects of one task, fed batch by batch, computed once at the end."""

    def __init__(
        self,
        task: str,
        num_classes: int | None = None,
        ignore_index: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.task = task
        self.num_classes = num_classes
        self.ignore_index = ignore_index if task == "segmentation" else None
        self.class_names = list(class_names or [])
        self._metrics: dict[str, Metric] = {}
        self._confusion: Metric | None = None
        self._per_class: Metric | None = None  # segmentation: IoU of each class

    def _build(self, out: torch.Tensor) -> None:
        """Create the metrics on the first batch, when the class count and device are known."""
        if self.task in ("classification", "segmentation"):
            c = self.num_classes or int(out.shape[1])
            self.num_classes = c
            ign = self.ignore_index
            self._metrics = {
                "accuracy" if self.task == "classification" else "pixel_accuracy": (
                    MulticlassAccuracy(c, average="micro", ignore_index=ign, **ONE_PROCESS)
                ),
                "f1": MulticlassF1Score(c, average="macro", ignore_index=ign, **ONE_PROCESS),
            }
            if self.task == "segmentation":
                self._metrics["miou"] = MulticlassJaccardIndex(
                    c, average="macro", ignore_index=ign, **ONE_PROCESS
                )
                self._per_class = MulticlassJaccardIndex(
                    c, average="none", ignore_index=ign, **ONE_PROCESS
                )
            self._confusion = MulticlassConfusionMatrix(c, ignore_index=ign, **ONE_PROCESS)
        elif self.task == "regression":
            self._metrics = {
                "mae": MeanAbsoluteError(**ONE_PROCESS),
                "rmse": MeanSquaredError(squared=False, **ONE_PROCESS),
            }
        else:
            raise ValueError(f"no val metrics for task {self.task!r} here (see image_quality)")
        for metric in self._all():
            metric.to(out.device)

    def _all(self) -> list[Metric]:
        extra = [m for m in (self._confusion, self._per_class) if m is not None]
        return [*self._metrics.values(), *extra]

    def reset(self) -> None:
        for metric in self._all():
            metric.reset()

    def update(self, out: torch.Tensor, y: torch.Tensor) -> None:
        """``out``: (B, C) or (B, C, H, W) logits, or predictions shaped like ``y``."""
        out = out.detach().float()
        if not self._metrics:
            self._build(out)
        if self.task in ("classification", "segmentation"):
            pred = out.argmax(dim=1)  # (B,) or (B, H, W) class indices
            for metric in self._all():
                metric.update(pred, y)
        else:
            out = out.reshape(y.shape)
            for metric in self._metrics.values():
                metric.update(out, y.float())

    def compute(self) -> MetricValues:
        scalars = {name: float(m.compute()) for name, m in self._metrics.items()}
        confusion = None
        if self._confusion is not None:
            cm = self._confusion.compute()  # (C, C): rows are targets, columns predictions
            confusion = cm.int().tolist()
            if self._per_class is not None:
                scalars.update(self._per_class_iou(self._per_class.compute(), cm))
        names = self.class_names or [str(i) for i in range(self.num_classes or 0)]
        return MetricValues(scalars, confusion, names if confusion is not None else [])

    def _per_class_iou(self, ious: torch.Tensor, cm: torch.Tensor) -> dict[str, float]:
        """``iou/<class>`` of every class present in the targets or predictions; absent
        classes (0/0, which torchmetrics reports as 0) are left out, as miou leaves them out."""
        present = (cm.sum(0) + cm.sum(1)) > 0
        names = self.class_names or [str(i) for i in range(len(ious))]
        return {f"iou/{names[i]}": float(ious[i]) for i in range(len(ious)) if present[i]}


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
        val,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(0),
    )
