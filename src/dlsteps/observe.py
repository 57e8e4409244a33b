"""What a training stage shows beside its loss curves: full val metrics and sample pictures.

``StageObserver`` gives the engine periodic callbacks (``metrics.every``,
``metrics.images_every``) and, at the end of the stage, one more full val pass whose
values the gates compare. It writes:

- ``metrics/<name>`` rows to the logbook (JSONL + TensorBoard scalars);
- the picture of fixed val samples to TensorBoard (``samples``) and to
  ``<stage>/samples.png`` for the report;
- ``<stage>/metrics.json``: the stage-end values and the confusion matrix;
- the stage's hyper-parameters with its metrics under TensorBoard's HParams plugin, so
  stages and runs can be compared side by side.

For ``task: generative`` the full val L1/PSNR and the image grids come from
``image_quality`` instead; only the HParams entry is written here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from dlsteps.atomic import write_bytes, write_json
from dlsteps.config import StagePlan
from dlsteps.images import png_bytes, sample_picture
from dlsteps.logbook import Logbook, Row
from dlsteps.metrics import (
    TASK_METRICS,
    MetricSet,
    MetricValues,
    evaluate,
    primary_metric,
    val_loader,
)

SAMPLES_PNG = "samples.png"
METRICS_JSON = "metrics.json"


class StageObserver:
    """Metric passes and pictures of one stage's model on its val set."""

    def __init__(
        self,
        plan: StagePlan,
        model: nn.Module,
        val: Dataset,
        stage_dir: Path,
        logbook: Logbook,
        device: torch.device,
        autocast: contextlib.AbstractContextManager | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        cfg = plan.config
        self.plan, self.model, self.stage_dir, self.logbook = plan, model, stage_dir, logbook
        self.device, self.autocast = device, autocast
        self.task, self.class_names = cfg.task, class_names
        self.own_metrics = cfg.task != "generative"  # generative: image_quality measures
        self.metric_set = MetricSet(cfg.task, num_classes, cfg.data.ignore_index, class_names)
        pin = cfg.data.pin_memory if cfg.data.pin_memory is not None else device.type == "cuda"
        self.loader = val_loader(
            val, cfg.data.val_batch_size or cfg.data.batch_size, cfg.data.num_workers, pin
        )
        self.fixed = _fixed_samples(val, cfg.metrics.images) if self.own_metrics else None
        self.primary = primary_metric(cfg.task, cfg.metrics.primary)  # a bad name fails early
        self.last: MetricValues | None = None
        self.last_step = -1
        self._pictured = -1  # step of the last picture: the stage end may coincide with one
        self._writer: SummaryWriter | None = None

    @classmethod
    def for_stage(
        cls,
        plan: StagePlan,
        model: nn.Module,
        datasets: tuple[Dataset, Dataset],
        stage_dir: Path,
        logbook: Logbook,
        device: torch.device,
        autocast: contextlib.AbstractContextManager | None = None,
    ) -> StageObserver:
        """Class count and names from the data set when it says them (``num_classes``,
        ``class_names`` attributes), else from the model's output."""
        train, val = datasets
        names = getattr(val, "class_names", None) or getattr(train, "class_names", None)
        return cls(
            plan,
            model,
            val,
            stage_dir,
            logbook,
            device,
            autocast,
            num_classes=getattr(train, "num_classes", None),
            class_names=list(names) if names else None,
        )

    def hooks(self) -> list[tuple[int, Callable[[int], None]]]:
        """The engine's periodic callbacks (``FitSetup.every``)."""
        m = self.plan.config.metrics
        out: list[tuple[int, Callable[[int], None]]] = []
        if self.own_metrics and m.every:
            out.append((m.every, self.measure))
        if self.fixed is not None and m.images_every:
            out.append((m.images_every, self.picture))
        return out

    def measure(self, step: int) -> MetricValues:
        """A full val pass at ``step``, logged as ``metrics/<name>`` rows."""
        if step != self.last_step or self.last is None:
            self.last = evaluate(
                self.model, self.loader, self.metric_set, self.device, self.autocast
            )
            self.last_step = step
            rows = [Row(step, f"metrics/{k}", v) for k, v in self.last.scalars.items()]
            self.logbook.write(rows)
            self.logbook.flush()
        return self.last

    def picture(self, step: int) -> np.ndarray | None:
        """Input / target / prediction of the fixed val samples, to TensorBoard and PNG."""
        if self.fixed is None or step == self._pictured:
            return None
        self._pictured = step
        x, y = self.fixed
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad(), self.autocast or contextlib.nullcontext():
            out = self.model(x.to(self.device))
        self.model.train(was_training)
        cfg = self.plan.config
        pic = sample_picture(cfg.task, x, y, out, cfg.data.ignore_index, self.class_names)
        if pic is not None:
            self.writer.add_image("samples", pic, step, dataformats="HWC")
            self.writer.flush()
            write_bytes(self.stage_dir / SAMPLES_PNG, png_bytes(pic))
        return pic

    def finish(self, step: int) -> None:
        """The stage-end pass: metrics (the gates' values), picture, metrics.json, HParams."""
        if self.own_metrics:
            values = self.measure(step)
            write_json(self.stage_dir / METRICS_JSON, {"step": step, **values.to_json()})
            self.picture(step)
        names = TASK_METRICS[self.task]
        if self.task == "segmentation":
            names = (*names, *(k for k in (self.last.scalars if self.last else {}) if "/" in k))
        exp, ssi, sei = hparams(
            _hyper_parameters(self.plan), {f"metrics/{name}": 0.0 for name in names}
        )
        for summary in (exp, ssi, sei):
            self.writer.file_writer.add_summary(summary)
        self.close()

    @property
    def writer(self) -> SummaryWriter:
        """Pictures and HParams in their own event file beside the logbook's scalars (the
        same TensorBoard run), opened on first use."""
        if self._writer is None:
            self._writer = SummaryWriter(str(self.stage_dir), filename_suffix=".pictures")
        return self._writer

    def close(self) -> None:
        """Called by ``finish``; a stage that stops early has every picture flushed already."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _fixed_samples(val: Dataset, count: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``count`` val samples spread evenly over the set, the same ones at every picture."""
    size = len(val)  # type: ignore[arg-type]
    if count == 0 or size == 0:
        return None
    indices = sorted({int(i) for i in np.linspace(0, size - 1, min(count, size)).round()})
    return next(iter(DataLoader(Subset(val, indices), batch_size=len(indices))))


def _hyper_parameters(plan: StagePlan) -> dict[str, Any]:
    """Flat, TensorBoard-typed (str/int/float/bool) hyper-parameters of a stage."""
    cfg, knobs = plan.config, plan.knobs
    flat: dict[str, Any] = {
        "stage": plan.stage,
        "task": cfg.task,
        "seed": cfg.seed,
        "data": cfg.data.name,
        "batch_size": cfg.data.batch_size,
        "model": cfg.model.name,
        "optim": cfg.optim.name,
        "lr": cfg.optim.lr,
        "weight_decay": cfg.optim.weight_decay,
        "scheduler": cfg.optim.scheduler,
        "precision": cfg.precision,
        "steps": knobs.steps or 0,
        "epochs": knobs.epochs or 0,
        "augmentations": knobs.augmentations
        if isinstance(knobs.augmentations, str)
        else ",".join(_names(knobs.augmentations)) or "none",
    }
    for key, value in cfg.model.args.items():
        if isinstance(value, int | float | str | bool):
            flat[f"model.{key}"] = value
    return flat


def _names(augmentations: list[Any]) -> list[str]:
    """``[hflip, {gaussian_noise: {sigma: 0.1}}]`` → ``["hflip", "gaussian_noise"]``."""
    return [n for e in augmentations for n in (e if isinstance(e, dict) else [str(e)])]
