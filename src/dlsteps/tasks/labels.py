"""What classification and segmentation share: class labels, cross-entropy on logits.

A fresh model's cross-entropy is about ln C; the baseline predicts the train label
frequencies; labels must lie in ``[0, C)`` for a model with C outputs (or equal
``ignore_index`` where the task has one); and a model that outputs probabilities instead
of logits caps what cross-entropy can learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from dlsteps.data.augment import class_weights
from dlsteps.data.stats import DataStats
from dlsteps.errors import ConfigError
from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.judge.rules import softmax_floor
from dlsteps.tasks.base import LabelInfo, ProbeFacts, Task

# Cross-entropy at init: a fresh model with small logits gives ln C; logits of std s add
# about s²/2, so ln C + 1 already means logits of std ~1.4 — too confident for a fresh model.
INIT_LOSS_MARGIN = 1.0
INIT_LOSS_REL = 0.5  # ... or half of ln C, whichever is larger (many classes)
# ignore_index is for void and boundary pixels (~5-10% in VOC-style masks); more than half
# of all targets ignored means the loss sees less data than it throws away
IGNORED_SHARE_WARN = 0.5
PROBABILITY_BATCHES = 3  # probe batches that must all lie in (0, 1) for that evidence


class LabelTask(Task):
    """A class label per sample or per pixel, cross-entropy on logits by default. With a
    loss that reads one output channel as a binary logit (``bce_with_logits``, ``dice``,
    ``focal``, your own), a one-channel model predicts two classes."""

    counts_labels = True
    unit = "items"  # what a label count counts, in messages
    default_loss = "cross_entropy"

    @property
    def binary_logit(self) -> bool:
        """One output channel means a binary logit (not with cross-entropy, where one
        channel is a model that cannot learn: its loss is always 0)."""
        chosen = self.resolved_loss
        return chosen is not None and (chosen.kind is None or chosen.kind.binary)

    def classes_of(self, num_outputs: int) -> int:
        """The classes a model with ``num_outputs`` output channels predicts."""
        return 2 if num_outputs == 1 and self.binary_logit else num_outputs

    def model_outputs(self, num_classes: int | None) -> int | None:
        """Two classes get one output channel with ``bce_with_logits`` and ``dice``."""
        kind = self.resolved_loss.kind if self.resolved_loss is not None else None
        return (
            1 if num_classes == 2 and kind is not None and kind.one_channel_for_two else num_classes
        )

    def init_limit(self, reference: float) -> float:
        return reference + max(INIT_LOSS_MARGIN, INIT_LOSS_REL * reference)

    def counted(self, counts: dict[int, int]) -> dict[int, int]:
        """Label counts without ``ignore_index``."""
        return {k: v for k, v in counts.items() if k != self.ignore_index}

    def baseline_loss(self, stats: DataStats, num_classes: int | None) -> float | None:
        """Cross-entropy on val of predicting the train label frequencies everywhere (for
        another loss the baseline is measured: ``losses.baseline``)."""
        if not self.own_loss:
            return None
        counts, val = self.counted(stats.train.label_counts), self.counted(stats.val.label_counts)
        total, vtotal = sum(counts.values()), sum(val.values())
        if not total or not vtotal:
            return None
        classes = num_classes or (max([*counts, *val]) + 1)
        # add-half smoothing keeps classes absent from train at a finite loss
        probs = {c: (counts.get(c, 0) + 0.5) / (total + 0.5 * classes) for c in range(classes)}
        return -sum(n / vtotal * math.log(probs.get(c, 1e-12)) for c, n in val.items())

    def baseline_metric(self, stats: DataStats, metric: str) -> tuple[float, float] | None:
        """Predicting the most frequent train class everywhere: its val share is the
        accuracy (and pixel accuracy); its IoU is that share, every other class's 0."""
        train, val = self.counted(stats.train.label_counts), self.counted(stats.val.label_counts)
        total = sum(val.values())
        if not train or not total:
            return None
        top = max(train, key=lambda c: train[c])
        share = val.get(top, 0) / total
        if metric in ("accuracy", "pixel_accuracy"):
            value = share
        elif metric == "miou":
            value = share / len(set(val) | {top})
        else:
            return None
        # the unit a score counts: an item, or a pixel (pixel-level scores; per image, a
        # Bernoulli variance would wildly overstate how much an IoU can vary)
        n = total if self.dense_targets else stats.val.read
        return value, math.sqrt(max(value * (1 - value), 0.0) / max(n, 1))

    def batch_problem(self, out: torch.Tensor, y: torch.Tensor) -> str | None:
        if y.is_floating_point():
            return f"targets are {y.dtype}; {self.name} needs integer class labels"
        return None

    def check_labels(
        self, stats: DataStats, num_outputs: int, labels: LabelInfo | None = None
    ) -> list[Diagnosis]:
        """The label counts in both directions: labels the model cannot output
        (``label_out_of_range``), labels swallowed by ``ignore_index`` (``labels_ignored``),
        classes that never appear (``class_missing``) and outputs no label ever asks for
        (``extra_outputs``)."""
        info = labels or LabelInfo()
        found = self._out_of_range(stats, num_outputs)
        ignored = self._ignored(stats)
        found += ignored
        if any(d.code == "label_out_of_range" for d in found):
            return found  # the counts below are meaningless until the labels fit the model
        swallowed = any(d.severity == "fail" for d in ignored)
        classes = self.classes_of(num_outputs)  # a binary logit's one channel: two classes
        found += _missing_classes(stats, self.counted, classes, info, swallowed)
        if not swallowed:  # with one class left, every other output is "extra": no news
            found += _extra_outputs(stats, self.counted, classes, info)
        return found

    def _out_of_range(self, stats: DataStats, num_outputs: int) -> list[Diagnosis]:
        found = []
        ignored = self.ignore_index
        classes = self.classes_of(num_outputs)
        for split, s in (("train", stats.train), ("val", stats.val)):
            bad = sorted(k for k in self.counted(s.label_counts) if k < 0 or k >= classes)
            if not bad:
                continue
            count = sum(s.label_counts[k] for k in bad)
            binary = num_outputs == 1 and set(self.counted(s.label_counts)) <= {0, 1}
            why = (
                ": one output channel with targets in {0, 1} is binary "
                f"{self.name}, but cross-entropy over a single channel is always 0 (softmax of "
                "one logit is 1), so nothing trains. Give the model 2 outputs, or set loss: "
                "{name: bce_with_logits} (or dice) for the one channel"
                if binary
                else ""
            )
            found.append(
                Diagnosis(
                    "label_out_of_range",
                    f"{split} labels {bad[:10]} ({count} {self.unit}) lie outside "
                    f"[0, {classes}) for a model with {num_outputs} outputs"
                    + (f" (data.ignore_index is {ignored})" if ignored is not None else "")
                    + f"{why}. {hint('label_out_of_range')}",
                )
            )
        return found

    def _ignored(self, stats: DataStats) -> list[Diagnosis]:
        """``ignore_index`` is for void and boundary pixels; when it holds most targets, or
        all but one class (a binary mask saved as 0/255 with the default 255), the loss
        sees (nearly) nothing to learn."""
        if self.ignore_index is None:
            return []
        counts = stats.train.label_counts
        total = sum(counts.values())
        ignored = counts.get(self.ignore_index, 0)
        if not total or not ignored:
            return []
        share = ignored / total
        kept = self.counted(counts)
        values = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        fix = (
            f"map {self.ignore_index} to a class in the data source (e.g. mask_values "
            f"{{0: 0, {self.ignore_index}: 1}}), or set data.ignore_index to a value the masks "
            "do not use (e.g. -100)"
        )
        if len(kept) <= 1:
            binary = sorted(counts) == [0, self.ignore_index]
            what = (
                f"a binary mask saved as 0/{self.ignore_index}: every foreground pixel equals "
                f"data.ignore_index {self.ignore_index}, so the loss and metrics ignore it and "
                "the model only learns 'background'"
                if binary
                else f"every pixel but class {sorted(kept)} is data.ignore_index "
                f"{self.ignore_index}: there is nothing to tell apart"
            )
            return [
                Diagnosis(
                    "labels_ignored",
                    f"train masks hold {share:.0%} {self.ignore_index} ({values}): {what}. "
                    f"Fix: {fix}.",
                )
            ]
        if share > IGNORED_SHARE_WARN:
            return [
                Diagnosis(
                    "labels_ignored",
                    f"{share:.0%} of the train {self.unit} equal data.ignore_index "
                    f"{self.ignore_index} ({values}): the loss learns from fewer than half of "
                    f"them. Fine for sparse annotations; if {self.ignore_index} is a class, {fix}.",
                    severity="warn",
                )
            ]
        return []

    def check_init(
        self,
        loss: float,
        out: torch.Tensor,
        stats: DataStats | None,
        probe: ProbeFacts | None = None,
    ) -> list[Diagnosis]:
        if not math.isfinite(loss):
            return super().check_init(loss, out, stats, probe)
        classes = out.shape[1] if out.ndim >= 2 else 1
        expected = self.expected_init_loss(classes)
        if found := check_probabilities(out, loss, expected, probe or ProbeFacts()):
            return found
        if expected is None:
            return []
        limit = expected + max(INIT_LOSS_MARGIN, INIT_LOSS_REL * expected)
        if loss <= limit:
            return []
        return [
            Diagnosis(
                "unexpected_init_loss",
                f"loss at init is {loss:.4g}; for {classes} classes a fresh model should give "
                f"about ln {classes} = {expected:.4g} (flagged above {limit:.3g}): the logits are "
                f"far too large (std ~{math.sqrt(2 * max(loss - expected, 0)):.2g}). "
                f"{hint('unexpected_init_loss')}",
            )
        ]

    def own_sample_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) cross-entropy of each sample (mean over its non-ignored pixels)."""
        ignore = self.ignore_index if self.ignore_index is not None else -100
        per = nn.functional.cross_entropy(out.float(), y, reduction="none", ignore_index=ignore)
        if per.ndim == 1:
            return per
        kept = (y != ignore).reshape(y.shape[0], -1).sum(dim=1).clamp_min(1)
        return per.reshape(per.shape[0], -1).sum(dim=1) / kept

    def class_weights(
        self, spec: str | Sequence[float], stats: DataStats, num_classes: int | None
    ) -> list[float] | None:
        chosen = self.resolved_loss
        takes = chosen is not None and (chosen.kind.weights if chosen.kind else True)
        if not takes:
            if spec == "auto":
                return None  # the augment stage's default: nothing to weight
            raise ConfigError(
                f"class_weights: the {chosen.name if chosen else 'task'} loss takes no class "
                "weights; set the stage's class_weights: none"
            )
        counts = stats.train.label_counts
        labels = list(self.counted(counts))
        num = num_classes or max(labels, default=0) + 1
        return class_weights(spec, counts, num)


def predicted(out: torch.Tensor) -> torch.Tensor:
    """Class indices from logits ``[B, C, ...]``: the arg-max, or for one channel (a binary
    logit) whether it is positive."""
    return out.argmax(1) if out.shape[1] > 1 else (out[:, 0] > 0).long()


def check_probabilities(
    out: torch.Tensor, loss: float, expected: float | None, probe: ProbeFacts
) -> list[Diagnosis]:
    """Cross-entropy applies log-softmax itself; outputs that are already probabilities
    cap what it can learn (softmax/sigmoid before the loss). Fired only on evidence a
    random initialisation cannot produce by luck: rows that sum to one across classes, a
    forward that ends in a sigmoid or softmax (the output's autograd node or the last
    module run), or outputs inside (0, 1) on every probe batch *and* a loss at init off
    ln C. Outputs that merely happen to lie in (0, 1) are not evidence."""
    if out.ndim < 2 or out.shape[1] < 2:
        return []
    o = out.detach().float()
    if not bool(torch.isfinite(o).all()):
        return []
    classes = int(out.shape[1])
    sums = o.sum(dim=1)
    in_unit = bool(o.min() >= 0 and o.max() <= 1)
    if in_unit and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3)):
        kind = "rows sum to 1: a softmax"
    elif probe.final_op is not None:
        kind = f"forward() ends in {probe.final_op}"
    elif (
        probe.unit_batches >= PROBABILITY_BATCHES
        and expected is not None
        and abs(loss - expected) > INIT_LOSS_MARGIN
    ):
        kind = (
            f"every output of {probe.unit_batches} probe batches lies inside (0, 1) and the "
            f"loss at init, {loss:.4g}, is off ln {classes}"
        )
    else:
        return []
    return [
        Diagnosis(
            "unexpected_init_loss",
            f"the model outputs probabilities, not logits ({kind}); cross-entropy applies "
            f"softmax again, so the loss starts near ln {classes} = {math.log(classes):.4g} but "
            f"can never go below ln(e + {classes} - 1) - 1 = {softmax_floor(classes):.4g}. "
            "Return raw logits from forward() and apply softmax only for predictions.",
        )
    ]


def _missing_classes(
    stats: DataStats,
    counted: Callable[[dict[int, int]], dict[int, int]],
    num_outputs: int,
    info: LabelInfo,
    swallowed: bool,
) -> list[Diagnosis]:
    """Classes of ``[0, C)`` that train never shows (C: the data's declared class count,
    else the classes up to the largest label): failing when at most one class is left to
    learn, a warning otherwise; and classes found in one split but not the other."""
    train, val = set(counted(stats.train.label_counts)), set(counted(stats.val.label_counts))
    seen = train | val
    # the data's classes: as declared, else up to the largest label (more outputs than
    # that are extra_outputs' to report)
    classes = info.declared or (min(num_outputs, max(seen) + 1) if seen else num_outputs)
    absent = [c for c in range(classes) if c not in train]
    found = []
    if absent and not swallowed:
        left = sorted(train)
        few = len(left) <= 1
        found.append(
            Diagnosis(
                "class_missing",
                f"{len(absent)} of {classes} classes never appear in train: "
                f"{info.named(absent)}"
                + (
                    f"; train holds only {info.named(left) or 'no label'}, so the model can "
                    "only learn to predict one constant"
                    if few
                    else "; the model never sees an example of them"
                )
                + f". {hint('class_missing')}",
                severity="fail" if few else "warn",
            )
        )
    if lacking := sorted(train - val):
        found.append(
            Diagnosis(
                "class_missing",
                f"val has no sample of train classes {info.named(lacking)}: their val "
                "metrics are undefined and left out of the macro averages. Split by a stable "
                "id per class (stratified), or add val samples of them.",
                severity="warn",
            )
        )
    if unseen := sorted(val - train):
        found.append(
            Diagnosis(
                "class_missing",
                f"val holds classes train never shows: {info.named(unseen)}; every val "
                "sample of them will be wrong whatever the model learns. Check the split "
                "and the label mapping of both splits.",
                severity="warn",
            )
        )
    return found


def _extra_outputs(
    stats: DataStats,
    counted: Callable[[dict[int, int]], dict[int, int]],
    num_outputs: int,
    info: LabelInfo,
) -> list[Diagnosis]:
    """More outputs than the data has classes: a head left at a library default (1000 for
    ImageNet) or a class count from another data set."""
    labels = set(counted(stats.train.label_counts)) | set(counted(stats.val.label_counts))
    if not labels:
        return []
    classes = max(info.declared or 0, max(labels) + 1)
    if num_outputs <= classes:
        return []
    return [
        Diagnosis(
            "extra_outputs",
            f"the model has {num_outputs} outputs but the data has {classes} classes "
            f"(labels {min(labels)}..{max(labels)}"
            + (f", num_classes {info.declared}" if info.declared else "")
            + f"): outputs {classes}..{num_outputs - 1} are never a target and the loss at "
            f"init is ln {num_outputs}, not ln {classes}. {hint('extra_outputs')}",
            severity="warn",
        )
    ]
