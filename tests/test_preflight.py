"""Preflight checks on tiny in-memory data sets and models: each passes a correct setup and
names what is wrong with a broken one."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from dlsteps.config import build_config
from dlsteps.data import stats as datastats
from dlsteps.preflight.checks import (
    check_gradient_reach,
    check_output_depends_on_input,
    check_overlap,
    final_operation,
    run_preflight,
)
from dlsteps.preflight.checks import check_repeat_reads as repeat_reads
from dlsteps.preflight.checks import check_shapes as shapes_of
from dlsteps.tasks import task_class
from dlsteps.tasks.base import ProbeFacts
from dlsteps.tasks.labels import check_probabilities as probabilities

CPU = torch.device("cpu")


# The checks by task name, as preflight applies them through the task's object.
def task_of(name: str):
    return task_class(name)()


def data_stats(train: Dataset, val: Dataset, task: str, workers: int, seed: int, cache):
    labels = task_of(task).counts_labels
    return datastats.data_stats(train, val, labels=labels, num_workers=workers, seed=seed)


def check_repeat_reads(train: Dataset, val: Dataset, task: str):
    return repeat_reads(train, val, task_of(task))


def check_shapes(out: torch.Tensor, y: torch.Tensor, task: str):
    return shapes_of(out, y, task_of(task))


def check_probabilities(out: torch.Tensor, task: str, unit_batches: int = 1):
    """The rule on ``out`` as preflight feeds it: the loss a fresh model would have (about
    ln C) and what the output's autograd graph says its last operation was."""
    if not task_of(task).counts_labels:
        return []
    classes = out.shape[1]
    facts = ProbeFacts(final_operation(out), unit_batches)
    return probabilities(out, math.log(classes), math.log(classes), facts)


def check_init_loss(loss: float, task: str, out: torch.Tensor, stats=None):
    return task_of(task).check_init(loss, out, stats)


def blobs(n: int, seed: int, dim: int = 16, classes: int = 4) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    return TensorDataset(torch.randn(n, dim, generator=g) + y[:, None].float(), y)


def mlp(dim: int = 16, classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, classes))


def preflight(train: Dataset, val: Dataset, model: nn.Module, task: str = "classification"):
    config = build_config({"task": task}, "<test>").plans["preflight"].config
    stats = data_stats(train, val, task, 0, 0, None)
    t = task_of(task)
    return run_preflight(model, t.loss(), train, val, stats, config, CPU, t)


def fail_codes(verdict) -> list[str]:
    return [d.code for d in verdict.diagnoses if d.severity == "fail"]


class RandomTarget(Dataset):
    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        return self.base[i][0], random.randrange(4)


class JointFlip(Dataset):
    """Segmentation items flipped (image and mask together) on some reads."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if random.random() < 0.5:
            return self.x[i].flip(-1), self.y[i].flip(-1)
        return self.x[i], self.y[i]


def test_correct_classification_setup_passes() -> None:
    v = preflight(blobs(64, 0), blobs(32, 1), mlp())
    assert v.status == "passed" and not fail_codes(v)
    assert v.figures["expected_init_loss"] == pytest.approx(math.log(4))


def test_correct_regression_setup_passes() -> None:
    x = torch.randn(64, 8)
    train = TensorDataset(x, x[:, :1] * 2)
    val = TensorDataset(torch.randn(16, 8), torch.randn(16, 1))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    v = preflight(train, val, model, task="regression")
    assert v.status == "passed" and not fail_codes(v), v.diagnoses


def test_random_targets_on_reread_are_nondeterministic() -> None:
    random.seed(0)
    found = check_repeat_reads(RandomTarget(blobs(64, 0)), blobs(32, 1), "classification")
    assert [d.code for d in found] == ["nondeterministic_labels"]
    assert check_repeat_reads(blobs(64, 0), blobs(32, 1), "classification") == []


def test_joint_flips_in_train_warn_and_in_val_fail() -> None:
    random.seed(0)
    found = check_repeat_reads(JointFlip(32), JointFlip(32), "segmentation")
    assert [(d.code, d.severity) for d in found] == [
        ("nondeterministic_labels", "warn"),
        ("val_augmented", "fail"),
    ]


def test_val_cut_from_train_overlaps_with_indices() -> None:
    train = blobs(64, 0)
    stats = data_stats(train, Subset(train, [3, 5, 7]), "classification", 0, 0, None)
    (d,) = check_overlap(stats)
    assert d.code == "split_overlap" and d.severity == "fail"
    assert "3 of 3" in d.message and "train 3 = val 0" in d.message


def test_val_from_train_in_another_normalisation_overlaps_loosely() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.zeros(40, dtype=torch.long)
    train = TensorDataset(images, labels)
    val = TensorDataset((images[:10].float() / 255 - 0.5) / 0.25, labels[:10])
    (d,) = check_overlap(data_stats(train, val, "classification", 0, 0, None))
    assert d.severity == "fail" and "10 of 10" in d.message and "normalisation" in d.message
    other = TensorDataset(torch.rand(10, 3, 8, 8, generator=g), labels[:10])
    assert check_overlap(data_stats(train, other, "classification", 0, 0, None)) == []


def test_shared_inputs_are_only_a_warning_when_inputs_repeat_anyway() -> None:
    # two binary features: every input repeats inside train too
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).repeat(20, 1)
    train, val = (
        TensorDataset(x, torch.zeros(40).long()),
        TensorDataset(x[:4], torch.zeros(4).long()),
    )
    (d,) = check_overlap(data_stats(train, val, "classification", 0, 0, None))
    assert d.severity == "warn"


def test_labels_out_of_range_and_the_ignore_index() -> None:
    train, val = blobs(64, 0), blobs(32, 1)
    v = preflight(train, val, mlp(classes=3))  # labels 0..3 for 3 outputs
    assert "label_out_of_range" in fail_codes(v)
    assert "[3]" in next(d.message for d in v.diagnoses if d.code == "label_out_of_range")


def test_shape_mismatches() -> None:
    assert check_shapes(torch.zeros(4, 1), torch.zeros(4), "regression")[0].code == (
        "shape_mismatch"
    )
    (mask,) = check_shapes(torch.zeros(4, 3, 8, 8), torch.zeros(4, 8, 6).long(), "segmentation")
    assert mask.code == "shape_mismatch" and "mask (4, 8, 6)" in mask.message
    assert check_shapes(torch.zeros(4, 3), torch.zeros(4).long(), "classification") == []


def test_probabilities_instead_of_logits() -> None:
    logits = torch.randn(16, 4, requires_grad=True)  # a forward's output: it has a graph
    (d,) = check_probabilities(logits.softmax(1), "classification")
    assert d.code == "unexpected_init_loss" and "0.7437" in d.message
    assert check_probabilities(logits.sigmoid(), "classification")[0].code == (
        "unexpected_init_loss"
    )
    assert check_probabilities(logits, "classification") == []
    assert check_probabilities(logits.relu() * 0.1, "classification") == []  # exact zeros
    assert check_probabilities(logits.softmax(1), "regression") == []


def test_outputs_that_merely_lie_in_0_1_are_no_evidence_of_a_sigmoid() -> None:
    """A fresh model whose logits all happen to fall in (0.18, 0.27) (tiny_unet with 2
    classes, seed 0) is not a model with a sigmoid: no rule may fire on luck."""
    lucky = 0.18 + 0.09 * torch.rand(16, 2, 8, 8, requires_grad=True)
    assert check_probabilities(lucky, "segmentation", unit_batches=3) == []
    squashed = torch.randn(16, 2, 8, 8, requires_grad=True).sigmoid()
    (d,) = check_probabilities(squashed, "segmentation")
    assert "forward() ends in a sigmoid" in d.message
    # upsampling after the sigmoid does not hide it
    up = torch.nn.functional.interpolate(squashed, scale_factor=2, mode="bilinear")
    assert check_probabilities(up, "segmentation")[0].code == "unexpected_init_loss"


def test_init_loss_far_above_ln_c_is_flagged() -> None:
    out = torch.zeros(16, 10)
    assert check_init_loss(math.log(10) + 0.5, "classification", out) == []
    (d,) = check_init_loss(12.0, "classification", out)
    assert d.code == "unexpected_init_loss" and "ln 10" in d.message
    assert check_init_loss(float("nan"), "classification", out)[0].code == "nan_loss"


def test_init_loss_of_regression_uses_the_target_scale() -> None:
    x = torch.randn(32, 4)
    train = TensorDataset(x, torch.randn(32, 1))
    stats = data_stats(train, train, "regression", 0, 0, None)
    assert check_init_loss(1.5, "regression", torch.zeros(32, 1), stats) == []
    assert check_init_loss(500.0, "regression", torch.zeros(32, 1), stats)[0].code == (
        "unexpected_init_loss"
    )


class Zeroing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x * 0)


def test_a_model_that_ignores_its_input() -> None:
    x = torch.randn(16, 16)
    (d,) = check_output_depends_on_input(x, Zeroing()(x))
    assert (d.code, d.severity) == ("input_ignored", "warn")  # overfit-few is where it fails
    assert check_output_depends_on_input(x, mlp()(x)) == []
    # identical inputs prove nothing
    same = x[:1].repeat(16, 1)
    assert check_output_depends_on_input(same, Zeroing()(same)) == []


class Detached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.head = nn.Linear(16, 8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).detach())


class NoGrad(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.fc(x)


def test_gradient_reach_names_unreached_parameters() -> None:
    x, y = torch.randn(16, 16), torch.randint(0, 4, (16,))
    ce = nn.CrossEntropyLoss()
    model = Detached()
    (d,) = check_gradient_reach(model, ce(model(x), y))
    assert d.code == "no_gradient" and "encoder.weight" in d.message and "head" not in d.message
    frozen = NoGrad()
    (d,) = check_gradient_reach(frozen, ce(frozen(x), y))
    assert d.code == "no_gradient" and "grad_fn" in d.message
    model = mlp()
    assert check_gradient_reach(model, ce(model(x), y)) == []
    assert all(p.grad is None for p in model.parameters())  # leaves no gradients behind


def test_nan_in_the_data_is_found_before_training() -> None:
    train = blobs(64, 0)
    train.tensors[0][[5, 9], 0] = float("nan")
    v = preflight(train, blobs(32, 1), mlp())
    d = next(d for d in v.diagnoses if d.code == "nan_loss")
    assert "[5, 9]" in d.message


def test_identical_train_inputs_mean_the_input_is_ignored() -> None:
    x = torch.randn(1, 16).repeat(32, 1)
    train = TensorDataset(x, torch.randint(0, 4, (32,)))
    v = preflight(train, blobs(16, 1), mlp())
    assert "input_ignored" in fail_codes(v)


def test_a_fully_frozen_model_has_no_gradient() -> None:
    v = preflight(blobs(64, 0), blobs(32, 1), mlp().requires_grad_(False))
    d = next(d for d in v.diagnoses if d.code == "no_gradient")
    assert d.severity == "fail" and "requires_grad=False" in d.message
