"""Multi-label classification: any number of labels per input; logits ``[B, C]``, targets
``[B, C]`` in {0, 1}, binary cross-entropy on logits by default.

A fresh model's BCE is ln 2 per label; the baseline predicts each label's train
frequency (its prior) for every input; the metrics are mean average precision and macro
F1 (torchmetrics), with the AP of each label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch

from dlsteps.data.stats import DataStats
from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.observe.images import multilabel_picture, on_cpu
from dlsteps.observe.metrics import MetricSet, MultilabelMetrics
from dlsteps.tasks.base import LabelInfo, ProbeFacts, Task
from dlsteps.tasks.labels import INIT_LOSS_MARGIN, INIT_LOSS_REL, PROBABILITY_BATCHES

PRIOR_FLOOR = 1e-4  # a label never seen in train still gets a finite baseline loss
SOFT = 1e-6  # mean(y²) below mean(y) by more than this: some targets lie strictly inside (0, 1)


class Multilabel(Task):
    name = "multilabel"
    metrics: ClassVar[Mapping[str, bool]] = {"map": True, "f1": True}
    default_loss = "bce_with_logits"
    loss_targets = "multilabel"

    def init_limit(self, reference: float) -> float:
        return reference + max(INIT_LOSS_MARGIN, INIT_LOSS_REL * reference)

    def batch_problem(self, out: torch.Tensor, y: torch.Tensor) -> str | None:
        if out.ndim != 2:
            return f"expected logits [B, C], got {tuple(out.shape)}"
        if tuple(y.shape) != tuple(out.shape):
            return (
                f"targets {tuple(y.shape)} do not match logits {tuple(out.shape)}: multilabel "
                "needs a multi-hot 0/1 vector, one entry per label, for each input (one "
                "class index per input is task: classification)"
            )
        return None

    def baseline_loss(self, stats: DataStats, num_classes: int | None) -> float | None:
        """BCE on val of predicting each label's train frequency for every input."""
        train, val = stats.train.target_mean, stats.val.target_mean
        if not (self.own_loss and train and val) or len(train) != len(val):
            return None
        p = np.clip(np.asarray(train), PRIOR_FLOOR, 1 - PRIOR_FLOOR)
        q = np.asarray(val)
        return float(np.mean(-(q * np.log(p) + (1 - q) * np.log(1 - p))))

    def check_labels(
        self, stats: DataStats, num_outputs: int, labels: LabelInfo | None = None
    ) -> list[Diagnosis]:
        class_names = labels.names if labels is not None else None
        found = []
        for split, s in (("train", stats.train), ("val", stats.val)):
            low, high = s.target_range or (0.0, 1.0)
            if low < 0 or high > 1:
                found.append(
                    Diagnosis(
                        "label_out_of_range",
                        f"{split} targets range over [{low:g}, {high:g}]; multilabel targets "
                        "are 0 (label off) or 1 (label on). Class indices ([3, 7]) must become "
                        f"a multi-hot vector of length {num_outputs}. {hint('label_out_of_range')}",
                    )
                )
            elif s.target_mean and s.target_sq_mean:
                soft = np.asarray(s.target_mean) - np.asarray(s.target_sq_mean)
                if float(soft.max()) > SOFT:
                    found.append(
                        Diagnosis(
                            "label_out_of_range",
                            f"some {split} targets lie strictly between 0 and 1 (soft labels); "
                            "BCE accepts them, but mAP and F1 read targets as 0/1.",
                            severity="warn",
                        )
                    )
        if not found:
            found += self._never_on(stats, class_names)
        return found

    def _never_on(self, stats: DataStats, names: Sequence[str] | None) -> list[Diagnosis]:
        """Labels on somewhere in one split and never in the other."""
        train, val = stats.train.target_mean, stats.val.target_mean
        if not train or not val or len(train) != len(val):
            return []
        found = []
        for lacking, have, other in (("val", val, train), ("train", train, val)):
            missing = [c for c in range(len(have)) if have[c] == 0 and other[c] > 0]
            if missing:
                named = ", ".join(
                    f"'{names[c]}'" if names and c < len(names) else str(c) for c in missing[:10]
                )
                found.append(
                    Diagnosis(
                        "class_missing",
                        f"no {lacking} item has label{'s' if len(missing) > 1 else ''} {named} "
                        f"on: its {lacking} AP is undefined and left out of mAP.",
                        severity="warn",
                    )
                )
        return found

    def check_init(
        self,
        loss: float,
        out: torch.Tensor,
        stats: DataStats | None,
        probe: ProbeFacts | None = None,
    ) -> list[Diagnosis]:
        found = super().check_init(loss, out, stats, probe)
        if found:
            return found
        facts = probe or ProbeFacts()
        expected = self.expected_init_loss(int(out.shape[1]) if out.ndim == 2 else 1)
        # evidence a random init cannot produce by luck (as for cross-entropy): a forward
        # that ends in a sigmoid, or (0, 1) outputs on every probe batch with a loss off ln 2
        squashed = facts.final_op == "a sigmoid" or (
            facts.unit_batches >= PROBABILITY_BATCHES
            and expected is not None
            and abs(loss - expected) > INIT_LOSS_MARGIN
        )
        if squashed and self.own_loss:
            return [
                Diagnosis(
                    "unexpected_init_loss",
                    "the model outputs probabilities, not logits (forward() ends in a "
                    "sigmoid); bce_with_logits applies the sigmoid itself. Return raw "
                    "logits from forward() and apply sigmoid only for predictions.",
                )
            ]
        if expected is None or loss <= (limit := self.init_limit(expected)):
            return []
        return [
            Diagnosis(
                "unexpected_init_loss",
                f"loss at init is {loss:.4g}; a fresh model should give about ln 2 = "
                f"{math.log(2):.4g} per label (flagged above {limit:.3g}): the logits are far "
                f"too large. {hint('unexpected_init_loss')}",
            )
        ]

    def metric_set(
        self, num_classes: int | None, class_names: list[str] | None, stats: DataStats | None
    ) -> MetricSet:
        return MultilabelMetrics(num_classes, class_names)

    def picture(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        out: torch.Tensor | None,
        class_names: list[str] | None = None,
    ) -> np.ndarray | None:
        cpu = on_cpu(x, y, out)
        if cpu is None or cpu[1].dim() != 2:
            return None
        x, y, out = cpu
        pred = None if out is None else (out > 0).long()
        return multilabel_picture(x, y.long(), pred, class_names)

    def own_sample_losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) binary cross-entropy of each sample, over its labels."""
        per = torch.nn.functional.binary_cross_entropy_with_logits(
            out.float(), y.float(), reduction="none"
        )
        return per.mean(dim=1)
