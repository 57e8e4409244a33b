"""What a training stage shows beside its loss curves: full val metrics and sample pictures.

``StageObserver`` gives the engine periodic callbacks (``metrics.every``,
``metrics.images_every``), measures at the start where the task asks for it, and at the
end of the stage runs one more full val pass whose values the gates compare. What is
measured and pictured is the task's (``Task.metric_set``, ``Task.picture``). It writes:

- ``metrics/<name>`` rows to the logbook (JSONL + TensorBoard scalars);
- the picture of fixed val samples to TensorBoard (``samples``) and to
  ``<stage>/samples.png`` for the report;
- ``<stage>/metrics.json``: the stage-end values and the confusion matrix (full-data:
  also the highest-loss val samples, pictured in ``worst.png``);
- the stage's first train batch as it enters the model, in ``batch.png``;
- the stage's hyper-parameters with its metrics under TensorBoard's HParams plugin, so
  stages and runs can be compared side by side.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from dlsteps.config import StagePlan
from dlsteps.data.items import CheckedCollate, IndexedItems
from dlsteps.data.loading import workers
from dlsteps.data.stats import DataStats
from dlsteps.logbook.book import Logbook
from dlsteps.logbook.curves import Row
from dlsteps.observe.images import png_bytes
from dlsteps.observe.metrics import MetricValues, evaluate, val_loader
from dlsteps.rundir.layout import BATCH_PNG, PICTURES_SUFFIX, WORST_PNG
from dlsteps.rundir.run import StageDir
from dlsteps.tasks.base import Task
from dlsteps.train.callbacks import Periodic
from dlsteps.train.engine import Callback

PICTURED_BATCH = 16  # samples of the first train batch shown
WORST_SAMPLES = 8  # highest-loss val samples shown at the end of full-data
if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class StageObserver:
    """Metric passes and pictures of one stage's model on its val set."""

    def __init__(
        self,
        plan: StagePlan,
        task: Task,
        model: nn.Module,
        datasets: tuple[Dataset, Dataset],
        stage_dir: StageDir,
        logbook: Logbook,
        device: torch.device,
        autocast: contextlib.AbstractContextManager | None = None,
        stats: DataStats | None = None,
    ) -> None:
        cfg = plan.config
        train, val = datasets
        names = getattr(val, "class_names", None) or getattr(train, "class_names", None)
        self.plan, self.task, self.model, self.val = plan, task, model, val
        self.stage_dir, self.logbook = stage_dir, logbook
        self.device, self.autocast = device, autocast
        self.class_names = list(names) if names else None
        # class count and names from the data set when it says them, else from the output
        self.metric_set = task.metric_set(
            getattr(train, "num_classes", None), self.class_names, stats
        )
        pin = cfg.data.pin_memory if cfg.data.pin_memory is not None else device.type == "cuda"
        self.loader = val_loader(
            val, cfg.data.val_batch_size or cfg.data.batch_size, workers(cfg.data), pin
        )
        self.fixed = _fixed_samples(val, cfg.metrics.images)
        self.last: MetricValues | None = None
        self.last_step = -1
        self._pictured = -1  # step of the last picture: the stage end may coincide with one
        self._writer: SummaryWriter | None = None

    def callbacks(self) -> list[Callback]:
        """Full val metrics every ``metrics.every`` and pictures every ``metrics.images_every``
        steps, as engine callbacks."""
        m = self.plan.config.metrics
        out: list[Callback] = []
        if m.every:
            out.append(Periodic(m.every, self.measure))
        if self.fixed is not None and m.images_every:
            out.append(Periodic(m.images_every, self.picture))
        return out

    def start(self) -> None:
        """Before the first step, where the task measures its starting point (generative:
        the generator a stage continues from)."""
        if self.task.measure_at_start:
            self.measure(0)
            self.picture(0)

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
        pic = self.task.picture(x, y, out, self.class_names)
        if pic is not None:
            self.writer.add_image("samples", pic, step, dataformats="HWC")
            self.writer.flush()
            self.stage_dir.write_samples(png_bytes(pic))
        if (text := self.task.text_samples(self.model, self.val, self.device)) is not None:
            # TensorBoard's text plugin reads markdown: a code block keeps the text as it is
            self.writer.add_text("samples", f"```\n{text}\n```", step)
            self.writer.flush()
            self.stage_dir.write_text_samples(text)
        return pic

    def first_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The stage's first train batch exactly as it enters the model (after augmentation
        and collation), with its targets drawn on: TensorBoard ``batch``, ``batch.png``."""
        shown = min(len(x), PICTURED_BATCH)
        pic = self.task.picture(x[:shown], y[:shown], None, self.class_names)
        if pic is not None:
            self.writer.add_image("batch", pic, 0, dataformats="HWC")
            self.writer.flush()
            self.stage_dir.write_png(BATCH_PNG, png_bytes(pic))

    def worst(self, step: int, count: int = WORST_SAMPLES) -> list[dict[str, float]]:
        """The val samples with the highest loss at the end of the stage: a picture of them
        (TensorBoard ``worst``, ``worst.png``) and their indices and losses."""
        losses = []
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for x, y in self.loader:
                x, y = x.to(self.device), y.to(self.device)
                with self.autocast or contextlib.nullcontext():
                    out = self.model(x)
                losses.append(self.task.sample_losses(out, y).float().cpu())
        self.model.train(was_training)
        per = torch.cat(losses)  # (N,) in val order: the loader does not shuffle
        top = torch.argsort(per, descending=True)[:count].tolist()
        picked = Subset(IndexedItems(self.val), top)
        x, y = next(iter(DataLoader(picked, batch_size=len(top), collate_fn=CheckedCollate("val"))))
        with torch.no_grad(), self.autocast or contextlib.nullcontext():
            self.model.eval()
            out = self.model(x.to(self.device))
            self.model.train(was_training)
        pic = self.task.picture(x, y, out, self.class_names)
        if pic is not None:
            self.writer.add_image("worst", pic, step, dataformats="HWC")
            self.writer.flush()
            self.stage_dir.write_png(WORST_PNG, png_bytes(pic))
        return [{"index": i, "loss": float(per[i])} for i in top]

    def finish(self, step: int, worst: bool = False) -> None:
        """The stage-end pass: metrics (the gates' values), picture, metrics.json, HParams."""
        values = self.measure(step)
        extra = {"worst": self.worst(step)} if worst else {}
        self.stage_dir.write_metrics({"step": step, **values.to_json(), **extra})
        self.picture(step)
        names = [*self.task.metrics, *(k for k in values.scalars if "/" in k)]
        from torch.utils.tensorboard.summary import hparams

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
        if self._writer is None:  # TensorBoard imported here: preflight never pays for it
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.stage_dir.path), filename_suffix=PICTURES_SUFFIX)
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
    picked = Subset(IndexedItems(val), indices)
    return next(iter(DataLoader(picked, batch_size=len(indices), collate_fn=CheckedCollate("val"))))


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
        "scheduler": cfg.optim.scheduler.name,
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
