"""Proof of silence: preflight says nothing (no failure, no warning of the label, output and
probability rules) on correct pipelines, whatever the seed. A false alarm on a correct
project costs as much trust as a missed bug, and a fresh model's outputs are random:
every rule must hold for every initialisation, not for the one a test happened to use.

``scripts/sweep_silence.py`` runs the same sweep over torchvision's models."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from dlsteps.config import build_config
from dlsteps.data.stats import data_stats
from dlsteps.ladder.project import seed_everything
from dlsteps.models.registry import build_model
from dlsteps.preflight.checks import run_preflight
from dlsteps.tasks import task_class

SEEDS = range(20)
CLASSES = (2, 3, 10)
# every rule whose input is a fresh model's output or the label counts
WATCHED = {
    "unexpected_init_loss",
    "label_out_of_range",
    "labels_ignored",
    "class_missing",
    "extra_outputs",
    "shape_mismatch",
    "no_gradient",
    "nan_loss",
    "batch_mixing",
    "unregistered_parameters",
    "schedule_mismatch",
}


class Images(Dataset):
    """Random images with every class present: per-item labels (classification) or a
    mask of 4x4 blocks of classes (segmentation); a pure function of the index."""

    def __init__(self, n: int, classes: int, size: int, dense: bool, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, size, size, generator=g)
        if dense:
            blocks = torch.arange(n * (size // 4) ** 2).reshape(n, size // 4, size // 4)
            self.y = (blocks % classes).repeat_interleave(4, 1).repeat_interleave(4, 2)
        else:
            self.y = torch.arange(n) % classes
        self.num_classes, self.in_channels = classes, 3

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


MODELS = {
    "tiny_unet": ("segmentation", {"width": 8}),
    "small_cnn": ("classification", {"width": 8}),
    "resnet18_stem": ("classification", {}),
}


@pytest.mark.slow
@pytest.mark.parametrize("classes", CLASSES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_built_in_models_pass_preflight_silently_on_20_seeds(name: str, classes: int) -> None:
    task_name, args = MODELS[name]
    task = task_class(task_name)()
    dense = task.dense_targets
    train, val = Images(48, classes, 16, dense, 0), Images(24, classes, 16, dense, 1)
    stats = data_stats(train, val, labels=True)
    config = build_config({"task": task_name}, "<test>").plans["preflight"].config
    alarms = {}
    for seed in SEEDS:
        seed_everything(seed)
        model = build_model(name, args, {"in_channels": 3, "num_classes": classes})
        verdict = run_preflight(
            model, task.loss(), train, val, stats, config, torch.device("cpu"), task
        )
        if noisy := [d.code for d in verdict.diagnoses if d.code in WATCHED]:
            alarms[seed] = noisy
    assert alarms == {}, f"{name} with {classes} classes: false alarms {alarms}"


@pytest.mark.slow
def test_a_heavily_imbalanced_set_passes_preflight_silently() -> None:
    """95 % of one class: every class is still present in both splits, so nothing may
    fire (the imbalance is augment's business: class weights)."""
    task = task_class("classification")()

    class Imbalanced(Images):
        def __init__(self, n: int, seed: int) -> None:
            super().__init__(n, 4, 16, False, seed)
            self.y = torch.where(torch.arange(n) % 20 == 0, torch.arange(n) % 3 + 1, 0)

    train, val = Imbalanced(400, 0), Imbalanced(120, 1)
    stats = data_stats(train, val, labels=True)
    config = build_config({"task": "classification"}, "<test>").plans["preflight"].config
    for seed in range(5):
        seed_everything(seed)
        model = build_model("small_cnn", {"width": 8}, {"in_channels": 3, "num_classes": 4})
        verdict = run_preflight(
            model, task.loss(), train, val, stats, config, torch.device("cpu"), task
        )
        assert [d.code for d in verdict.diagnoses if d.code in WATCHED] == [], seed
