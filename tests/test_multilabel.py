"""task: multilabel: 0/1 targets per label, BCE on logits, mAP and macro F1, the per-label
prior as the baseline, and a label check that names what is wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlsteps.data.stats import data_stats
from dlsteps.data.tensors import TensorPairs
from dlsteps.observe.metrics import MultilabelMetrics
from dlsteps.tasks import task_class
from dlsteps.tasks.base import LabelInfo, ProbeFacts


def _pairs(targets: torch.Tensor, seed: int) -> TensorPairs:
    gen = torch.Generator().manual_seed(seed)
    return TensorPairs(torch.randn(len(targets), 1, 8, 8, generator=gen), targets, 3)


def test_the_baseline_is_the_bce_of_each_labels_train_frequency() -> None:
    gen = torch.Generator().manual_seed(0)
    freq = torch.tensor([0.7, 0.2, 0.5])
    ty = (torch.rand(300, 3, generator=gen) < freq).float()
    vy = (torch.rand(100, 3, generator=gen) < freq).float()
    stats = data_stats(_pairs(ty, 0), _pairs(vy, 1), labels=False)
    p = ty.mean(0).double()
    expected = float(torch.nn.functional.binary_cross_entropy(p.expand(100, 3), vy.double()))
    baseline = task_class("multilabel")().baseline_loss(stats, 3)
    assert baseline == pytest.approx(expected, rel=1e-6)


def test_targets_outside_0_1_fail_and_soft_labels_warn() -> None:
    task = task_class("multilabel")()
    good = torch.randint(0, 2, (20, 3)).float()
    stats = data_stats(_pairs(good, 0), _pairs(good.flip(0), 1), labels=False)
    assert task.check_labels(stats, 3) == []  # silent on a correct data set
    indices = good.clone()
    indices[0, 0] = 2.0  # a class index where a multi-hot vector belongs
    (bad,) = task.check_labels(data_stats(_pairs(indices, 0), _pairs(good, 1), labels=False), 3)
    assert bad.code == "label_out_of_range" and bad.severity == "fail"
    soft = good.clone() * 0.9
    (warn,) = task.check_labels(data_stats(_pairs(soft, 0), _pairs(good, 1), labels=False), 3)
    assert warn.code == "label_out_of_range" and warn.severity == "warn"


def test_a_label_never_on_in_val_is_named() -> None:
    task = task_class("multilabel")()
    train = torch.randint(0, 2, (30, 3)).float()
    train[0] = 1.0
    val = torch.randint(0, 2, (10, 3)).float()
    val[:, 2] = 0.0
    stats = data_stats(_pairs(train, 0), _pairs(val, 1), labels=False)
    (d,) = task.check_labels(stats, 3, LabelInfo(names=["cat", "dog", "bird"]))
    assert d.code == "class_missing" and "'bird'" in d.message and d.severity == "warn"


def test_shapes_and_init() -> None:
    task = task_class("multilabel")()
    assert task.batch_problem(torch.zeros(4, 3), torch.zeros(4, 3)) is None
    assert "multi-hot" in task.batch_problem(torch.zeros(4, 3), torch.zeros(4).long())
    assert task.expected_init_loss(3) == pytest.approx(math.log(2))
    y = torch.randint(0, 2, (16, 3)).float()
    squashed = torch.randn(16, 3).sigmoid()
    # (0, 1) outputs alone are not evidence: a logit head can land there by chance
    assert task.check_init(0.7, squashed, None) == []
    (sig,) = task.check_init(0.7, squashed, None, ProbeFacts(final_op="a sigmoid"))
    assert sig.code == "unexpected_init_loss" and "sigmoid" in sig.message
    assert (
        task.check_init(
            float(task.loss()(torch.randn(16, 3) * 0.1, y)), torch.randn(16, 3) * 0.1, None
        )
        == []
    )


def test_metrics_are_map_and_macro_f1_with_an_ap_per_label() -> None:
    metrics = MultilabelMetrics(3, ["a", "b", "c"])
    y = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]).float()
    metrics.update((y * 2 - 1) * 5, y)  # confident and right
    values = metrics.compute().scalars
    assert values["map"] == pytest.approx(1.0) and values["f1"] == pytest.approx(1.0)
    assert set(values) == {"map", "f1", "ap/a", "ap/b", "ap/c"}
    metrics.reset()
    metrics.update(torch.from_numpy(np.zeros((4, 3), dtype=np.float32)), y)
    assert metrics.compute().scalars["f1"] < 1.0
