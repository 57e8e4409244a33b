"""What classification and segmentation share: class labels, cross-entropy on logits.

A fresh model's cross-entropy is about ln C; the baseline predicts the train label
frequencies; labels must lie in ``[0, C)`` for a model with C outputs (or equal
``ignore_index`` where the task has one); and a model that outputs probabilities instead
of logits caps what cross-entropy can learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dlsteps.data.augment import class_weights
from dlsteps.data.stats import DataStats
from dlsteps.errors import ConfigError
from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.judge.rules import softmax_floor
from dlsteps.tasks.base import Task

# Cross-entropy at init: a fresh model with small logits gives ln C; logits of std s add
# about s²/2, so ln C + 1 already means logits of std ~1.4 — too confident for a fresh model.
INIT_LOSS_MARGIN = 1.0
INIT_LOSS_REL = 0.5  # ... or half of ln C, whichever is larger (many classes)


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

    def batch_problem(self, out: torch.Tensor, y: torch.Tensor) -> str | None:
        if y.is_floating_point():
            return f"targets are {y.dtype}; {self.name} needs integer class labels"
        return None

    def check_labels(
        self, stats: DataStats, num_outputs: int, class_names: Sequence[str] | None = None
    ) -> list[Diagnosis]:
        found = []
        ignored = self.ignore_index
        classes = self.classes_of(num_outputs)
        for split, s in (("train", stats.train), ("val", stats.val)):
            bad = sorted(k for k in self.counted(s.label_counts) if k < 0 or k >= classes)
            if bad:
                count = sum(s.label_counts[k] for k in bad)
                found.append(
                    Diagnosis(
                        "label_out_of_range",
                        f"{split} labels {bad[:10]} ({count} {self.unit}) lie outside "
                        f"[0, {classes}) for a model with {num_outputs} outputs"
                        + (f" (data.ignore_index is {ignored})" if ignored is not None else "")
                        + f". {hint('label_out_of_range')}",
                    )
                )
        if not found:
            found += check_class_missing(self, stats, classes, class_names)
        return found

    def check_init(
        self, loss: float, out: torch.Tensor, stats: DataStats | None
    ) -> list[Diagnosis]:
        if not math.isfinite(loss):
            return super().check_init(loss, out, stats)
        if found := check_probabilities(out):
            return found
        classes = out.shape[1] if out.ndim >= 2 else 1
        expected = self.expected_init_loss(classes)
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


def check_class_missing(
    task: LabelTask, stats: DataStats, classes: int, names: Sequence[str] | None
) -> list[Diagnosis]:
    """A class that one split has and the other lacks: its val metrics say nothing about
    it (missing from val), or the model never sees it (missing from train). A warning:
    real data sets can lack a rare class in a small val split on purpose."""
    train, val = task.counted(stats.train.label_counts), task.counted(stats.val.label_counts)
    found = []
    for lacking, other, have, counts in (
        ("val", "train", val, train),
        ("train", "val", train, val),
    ):
        missing = [c for c in range(classes) if c in counts and c not in have]
        if not missing:
            continue
        named = ", ".join(
            f"'{names[c]}' (class {c}, {counts[c]} {task.unit} in {other})"
            if names and c < len(names)
            else f"{c} ({counts[c]} {task.unit} in {other})"
            for c in missing[:10]
        )
        effect = (
            "its val metrics say nothing about it, and full-data cannot show whether it is learnt"
            if lacking == "val"
            else "the model never sees it in training, yet val scores it"
        )
        found.append(
            Diagnosis(
                "class_missing",
                f"{lacking} has no {task.unit} of class{'es' if len(missing) > 1 else ''} "
                f"{named}: {effect}. The class map is the same for both splits. Move some "
                f"of those {task.unit} into {lacking}, or accept the gap knowingly.",
                severity="warn",
            )
        )
    return found


def predicted(out: torch.Tensor) -> torch.Tensor:
    """Class indices from logits ``[B, C, ...]``: the arg-max, or for one channel (a binary
    logit) whether it is positive."""
    return out.argmax(1) if out.shape[1] > 1 else (out[:, 0] > 0).long()


def check_probabilities(out: torch.Tensor) -> list[Diagnosis]:
    """Cross-entropy applies log-softmax itself; outputs already in [0, 1] cap what it can
    learn (softmax/sigmoid before the loss)."""
    if out.ndim < 2 or out.shape[1] < 2:
        return []
    o = out.detach().float()
    if not (bool(torch.isfinite(o).all()) and o.min() >= 0 and o.max() <= 1):
        return []
    sums = o.sum(dim=1)
    softmax = bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3))
    if not softmax and not (o.min() > 0 and o.max() < 1):
        return []  # exact 0s or 1s without rows summing to 1: not a squashing output
    if not softmax and not (o.min() < 0.5 < o.max()):
        # a fresh model's sigmoid outputs lie on both sides of 0.5; small raw logits with a
        # positive offset (a 2-class head whose biases came out positive) lie on one side
        return []
    classes = int(out.shape[1])
    kind = "rows sum to 1: a softmax" if softmax else "all strictly inside (0, 1): a sigmoid"
    return [
        Diagnosis(
            "unexpected_init_loss",
            f"the model outputs probabilities, not logits ({kind}); cross-entropy applies "
            f"softmax again, so the loss starts near ln {classes} = {math.log(classes):.4g} but "
            f"can never go below ln(e + {classes} - 1) - 1 = {softmax_floor(classes):.4g}. "
            "Return raw logits from forward() and apply softmax only for predictions.",
        )
    ]
