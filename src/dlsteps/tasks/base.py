"""``Task``: everything that differs between kinds of projects, behind one interface.

The ladder, preflight, the observer and the gates hold a ``Task`` and call it; none of
them asks which task it is. A task owns

- its default loss, and the loss a fresh model should start at;
- the input-independent baseline (the best predictor that ignores the input);
- the target contract: what an output and a target batch must look like, and what the
  label counts must say;
- its val metrics and the primary metric the augment and scale-up gates compare;
- its pictures of inputs, targets and predictions;
- its ladder (``ladder.stages``).

A new task is a subclass in one file plus ``tasks.register_task(name, cls)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from dlsteps.data.stats import DataStats
from dlsteps.errors import ConfigError, did_you_mean
from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.judge.verdict import Primary
from dlsteps.ladder.stages import STANDARD_LADDER, Stage
from dlsteps.losses.builtin import ResolvedLoss, resolve_loss
from dlsteps.observe.images import image_to_image_picture, on_cpu
from dlsteps.observe.metrics import MetricSet

INIT_VALUE_FACTOR = 10.0  # value losses at init: a fresh model's outputs add their spread


@dataclass(frozen=True)
class LabelInfo:
    """What the data set says about its classes (its ``num_classes`` and ``class_names``
    attributes), for messages that name classes."""

    declared: int | None = None
    names: Sequence[str] | None = None

    def named(self, classes: Sequence[int]) -> str:
        shown = [
            f"{c} ({self.names[c]})" if self.names and 0 <= c < len(self.names) else str(c)
            for c in classes[:10]
        ]
        return ", ".join(shown) + (f", ... ({len(classes) - 10} more)" if len(classes) > 10 else "")


@dataclass(frozen=True)
class ProbeFacts:
    """What preflight saw of a fresh model beside its output on the probe batch."""

    final_op: str | None = None  # "a sigmoid" / "a softmax": the forward's last operation
    unit_batches: int = 0  # probe batches whose every output lay inside (0, 1)
    nonfinite_in: str | None = None  # the first module whose output was NaN/Inf ("input")


class Task:
    """One kind of project. Class attributes are facts about the task; methods take what
    they need from the data (stats, outputs, targets) as arguments."""

    name: ClassVar[str]
    ladder: ClassVar[tuple[Stage, ...]] = STANDARD_LADDER
    # the val metrics and whether higher is better; the first is the default primary metric
    metrics: ClassVar[Mapping[str, bool]]
    counts_labels: ClassVar[bool] = False  # targets are class labels (counted per split)
    dense_targets: ClassVar[bool] = False  # a target per pixel: it moves with the image
    measure_at_start: ClassVar[bool] = False  # full val metrics (and a picture) at step 0 too
    ignore_index: int | None = None  # a target value left out of loss and metrics
    # the loss of ``loss: auto``, and what the targets are to a loss (``losses.builtin``);
    # a task without a default brings its own ``loss()``
    default_loss: ClassVar[str | None] = None
    loss_targets: ClassVar[str | None] = None
    # the loss the config asks for (``loss: {name, args}``), resolved by ``configured``
    _resolved: ResolvedLoss | None = None
    _sample_loss: nn.Module | None = None  # the configured loss, built once for worst samples

    @classmethod
    def from_config(cls, config: Any) -> Task:
        """The task set up with a validated ``Config``'s data settings and loss."""
        return cls().configured(config)

    def configured(self, config: Any) -> Task:
        """Resolve ``config.loss`` against this task (an unknown loss, or one that does not
        fit the task's targets, is a config error at the start of the run)."""
        spec = getattr(config, "loss", None)
        name = spec.name if spec is not None else "auto"
        name = self.default_loss if name == "auto" else name
        if name is not None:
            args = spec.args if spec is not None else {}
            self._resolved = resolve_loss(name, args, self.loss_targets, self.name)
            self._sample_loss = None
        return self

    @property
    def resolved_loss(self) -> ResolvedLoss | None:
        """The configured loss; the task's default for a task built without a config."""
        if self._resolved is None and self.default_loss is not None:
            self._resolved = resolve_loss(self.default_loss, {}, self.loss_targets, self.name)
        return self._resolved

    # --- loss ---------------------------------------------------------------------------
    def loss(self, class_weights: Sequence[float] | None = None) -> nn.Module:
        """A fresh loss module: the configured one, ``class_weights`` on the train loss."""
        if self.resolved_loss is None:
            raise NotImplementedError(f"task {self.name} has no loss")
        return self.resolved_loss.build(class_weights, self.ignore_index)

    @property
    def own_loss(self) -> bool:
        """The task's default loss unchanged: its closed-form baseline and init check hold."""
        chosen = self.resolved_loss
        return chosen is not None and chosen.name == self.default_loss and not chosen.args

    def expected_init_loss(self, num_outputs: int) -> float | None:
        """The loss of a fresh model that predicts 'don't know'; None when there is no
        closed form."""
        return self.resolved_loss.init_loss(num_outputs) if self.resolved_loss else None

    def measures_init_loss(self, num_outputs: int) -> bool:
        """Whether preflight measures the loss at init instead (``init_reference``): a loss
        other than the task's own, without a closed form."""
        return (
            self.resolved_loss is not None
            and not self.own_loss
            and self.expected_init_loss(num_outputs) is None
        )

    def init_limit(self, reference: float) -> float:
        """The highest init loss accepted against a measured ``reference`` (values: the
        MSE rule's factor, since a fresh model's outputs add their own spread)."""
        return INIT_VALUE_FACTOR * reference + 1.0

    def check_init_reference(self, loss: float, reference: float) -> list[Diagnosis]:
        """The init loss against the loss of an all-zero output on the same batch."""
        if not (math.isfinite(loss) and math.isfinite(reference)):
            return []
        limit = self.init_limit(reference)
        if loss <= limit:
            return []
        return [
            Diagnosis(
                "unexpected_init_loss",
                f"loss at init is {loss:.4g}; an all-zero output (every class equally likely, "
                f"every value 0) gives {reference:.4g} on the same batch (flagged above "
                f"{limit:.3g}): the fresh model's outputs are far too large. "
                f"{hint('unexpected_init_loss')}",
            )
        ]

    def model_outputs(self, num_classes: int | None) -> int | None:
        """The model's ``num_classes`` argument for data with ``num_classes`` classes."""
        return num_classes

    def baseline_loss(self, stats: DataStats, num_classes: int | None) -> float | None:
        """Val loss of the best input-independent predictor fitted on train."""
        return None

    def baseline_metric(self, stats: DataStats, metric: str) -> tuple[float, float] | None:
        """What that predictor scores on the val ``metric``, and the standard error of that
        score at this val size; None when it has no closed form here."""
        return None

    # --- the target contract -------------------------------------------------------------
    def batch_problem(self, out: torch.Tensor, y: torch.Tensor) -> str | None:
        """What is wrong with a model output batch ``out`` against a target batch ``y``."""
        if tuple(out.shape) != tuple(y.shape):
            # MSE/L1 would broadcast [B, 1] against [B] to [B, B] with only a warning
            return f"prediction {tuple(out.shape)} and target {tuple(y.shape)} differ"
        return None

    def check_labels(
        self, stats: DataStats, num_outputs: int, labels: LabelInfo | None = None
    ) -> list[Diagnosis]:
        """The label counts against the model's outputs (tasks with class labels)."""
        return []

    def check_data(self, stats: DataStats) -> list[Diagnosis]:
        """What the data pass alone shows is broken for this task, before any other data
        check (a language model's corpus tokenized to one id)."""
        return []

    def check_probe(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor
    ) -> list[Diagnosis]:
        """Checks of a fresh model on the probe batch that only this task can make (a
        language model's targets shifted by one, its causal mask)."""
        return []

    def text_samples(self, model: nn.Module, val: Dataset, device: torch.device) -> str | None:
        """What the model makes of fixed val samples, as text (a language model's
        generations); None for tasks whose pictures are images."""
        return None

    def check_init(
        self,
        loss: float,
        out: torch.Tensor,
        stats: DataStats | None,
        probe: ProbeFacts | None = None,
    ) -> list[Diagnosis]:
        """The loss of a fresh model on a probe batch (``out`` its outputs)."""
        if not math.isfinite(loss):
            where = probe.nonfinite_in if probe is not None else None
            if where == "input":
                born = "the probe batch's inputs already hold NaN/Inf: clean the data"
            elif where is not None:
                born = (
                    f"the first NaN/Inf comes out of module '{where}'. Nothing has trained yet, "
                    "so it is not the learning rate: look at that module's initialisation and "
                    "at what it computes (log, sqrt or division of zero or a negative number)"
                )
            else:
                born = (
                    "the model's outputs are finite, so the loss makes it: check the targets "
                    "(values the loss cannot take) and the loss function"
                )
            return [
                Diagnosis(
                    "nan_loss", f"the loss of a fresh model on a probe batch is {loss}: {born}."
                )
            ]
        return []

    # --- metrics, pictures, data engineering --------------------------------------------------
    def primary(self, configured: str = "auto") -> Primary:
        """Resolve ``metrics.primary``; an unknown name is a config error."""
        names = list(self.metrics)
        name = names[0] if configured == "auto" else configured
        if name not in names:
            raise ConfigError(
                f"metrics.primary: '{configured}' is not a {self.name} metric."
                f"{did_you_mean(configured, names)} Choose one of: auto, {', '.join(names)}"
            )
        return Primary(name, self.metrics[name])

    def metric_set(
        self, num_classes: int | None, class_names: list[str] | None, stats: DataStats | None
    ) -> MetricSet:
        raise NotImplementedError

    def picture(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        out: torch.Tensor | None,
        class_names: list[str] | None = None,
    ) -> np.ndarray | None:
        """(H, W, 3) uint8 picture of inputs, targets and predictions (``out`` None: the
        inputs with their targets drawn on, a batch as it enters the model); None when
        the data is nothing a person can look at."""
        return None

    def sample_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) the loss of each sample: which val samples the model gets most wrong. The
        task's own loss in one batched call; any other loss (dice, focal, the user's own,
        one binary channel) sample by sample, since only it knows how it reads ``out``."""
        if self.own_loss or self.resolved_loss is None:
            return self.own_sample_losses(out, y)
        if self._sample_loss is None:
            self._sample_loss = self.loss()
        return torch.stack(
            [self._sample_loss(out[i : i + 1], y[i : i + 1]).float() for i in range(len(y))]
        )

    def own_sample_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) the task's own loss per sample (here squared error)."""
        per = (out.float().reshape(y.shape) - y.float()) ** 2
        return per.reshape(per.shape[0], -1).mean(dim=1)

    def class_weights(
        self, spec: str | Sequence[float], stats: DataStats, num_classes: int | None
    ) -> list[float] | None:
        """Per-class loss weights for ``class_weights: spec``; None for tasks without classes."""
        return None


class ValueTask(Task):
    """Float targets predicted as they are (regression, generative): pictures show input,
    target and prediction side by side when the targets are images."""

    def picture(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        out: torch.Tensor | None,
        class_names: list[str] | None = None,
    ) -> np.ndarray | None:
        cpu = on_cpu(x, y, out)
        if cpu is None or cpu[1].dim() != 4:
            return None
        x, y, out = cpu
        return image_to_image_picture(x, y.float(), None if out is None else out.reshape(y.shape))
