"""Configured losses: the built-ins know their init loss, ignore what they must, and a loss
without a formula gets its init reference and its baseline measured."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from picture_folders import write_image_folder, write_segmentation_folder

from dlsteps.config import load_config
from dlsteps.data.stats import data_stats
from dlsteps.data.tensors import TensorPairs
from dlsteps.errors import ConfigError
from dlsteps.losses.baseline import measured_baseline
from dlsteps.tasks import make_task

PLUGINS = Path(__file__).parent / "plugins"
LADDER = ("preflight", "overfit-one", "overfit-few", "full-data")


def _task(tmp_path: Path, **raw):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return make_task(load_config(path).base)


@pytest.mark.parametrize(
    ("task", "loss", "classes", "expected"),
    [
        ("classification", "cross_entropy", 7, math.log(7)),
        ("multilabel", "bce_with_logits", 5, math.log(2)),
        ("segmentation", "bce_with_logits", 1, math.log(2)),
    ],
)
def test_closed_form_init_losses_are_the_loss_of_an_all_zero_output(
    tmp_path: Path, task: str, loss: str, classes: int, expected: float
) -> None:
    t = _task(tmp_path, task=task, loss={"name": loss})
    assert t.expected_init_loss(classes) == pytest.approx(expected)
    shape = {"classification": (8, classes), "multilabel": (8, classes)}.get(task, (8, 1, 6, 6))
    target = {
        "classification": torch.randint(0, classes, (8,)),
        "multilabel": torch.randint(0, 2, (8, classes)).float(),
    }.get(task, torch.randint(0, 2, (8, 6, 6)))
    assert float(t.loss()(torch.zeros(shape), target)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", ["cross_entropy", "dice", "dice_ce", "focal", "bce_with_logits"])
def test_segmentation_losses_leave_ignore_index_pixels_out(tmp_path: Path, loss: str) -> None:
    t = _task(tmp_path, task="segmentation", loss={"name": loss}, data={"ignore_index": 255})
    channels = 1 if loss == "bce_with_logits" else 3
    y = torch.randint(0, min(channels + 1, 3), (2, 8, 8))
    y[:, :2] = 255
    out = torch.randn(2, channels, 8, 8)
    changed = out.clone()
    changed[:, :, :2] = 100.0  # only the ignored rows differ
    fn = t.loss()
    assert float(fn(out, y)) == pytest.approx(float(fn(changed, y)), rel=1e-6)


def test_measured_baseline_matches_the_formula_where_there_is_one(tmp_path: Path) -> None:
    """The fitted constant reaches the train class frequencies: its val cross-entropy is
    the closed-form baseline's."""
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.6, 0.3, 0.1])
    ty, vy = (
        torch.multinomial(probs, 400, True, generator=gen),
        torch.multinomial(probs, 200, True, generator=gen),
    )
    train = TensorPairs(torch.randn(400, 4, generator=gen), ty, 3)
    val = TensorPairs(torch.randn(200, 4, generator=gen), vy, 3)
    task = _task(tmp_path, task="classification")
    closed = task.baseline_loss(data_stats(train, val, labels=True), 3)
    model = torch.nn.Linear(4, 3)
    measured = measured_baseline(model, task.loss(), train, val, torch.device("cpu"))
    assert measured == pytest.approx(closed, abs=0.01)


def test_another_loss_has_no_formula_baseline_and_measures_its_init(tmp_path: Path) -> None:
    task = _task(tmp_path, task="classification", loss={"name": "focal"})
    assert task.expected_init_loss(3) is None and task.measures_init_loss(3)
    assert task.baseline_loss(None, 3) is None  # measured at full-data instead
    default = _task(tmp_path, task="classification")
    assert not default.measures_init_loss(3) and default.own_loss


@pytest.mark.parametrize(
    ("loss", "task", "match"),
    [
        ({"name": "dicee"}, "segmentation", r"loss\.name: unknown loss 'dicee'.*'dice'"),
        ({"name": "mse"}, "classification", r"mse does not fit task classification"),
        ({"name": "dice"}, "classification", r"use one of: cross_entropy"),
        ({"name": "own_losses:nope"}, "classification", r"has no function 'nope'"),
    ],
)
def test_bad_losses_exit_2_naming_the_key(cli, tmp_path, monkeypatch, loss, task, match) -> None:
    monkeypatch.syspath_prepend(str(PLUGINS))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"task": task, "loss": loss}))
    result = cli("check", path, "--run-dir", tmp_path / "run")
    assert result.code == 2
    assert re.search(match, result.err), result.err


def test_class_weights_with_a_loss_that_takes_none_is_a_config_error(tmp_path: Path) -> None:
    task = _task(tmp_path, task="segmentation", loss={"name": "dice"})
    assert task.class_weights("auto", None, 2) is None  # augment's default: nothing to weight
    with pytest.raises(ConfigError, match="takes no class weights"):
        task.class_weights("inverse", None, 2)


def _config(tmp_path: Path, root: Path, **extra) -> Path:
    config = {
        "task": "classification",
        "device": "cpu",
        "data": {"name": "image_folder", "args": {"root": str(root)}, "batch_size": 16},
        "model": {"name": "small_cnn", "args": {"width": 16}},
        "optim": {"lr": 3.0e-3},
        "stages": {"full-data": {"epochs": 8}},
        **extra,
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_your_own_loss_climbs_to_full_data_against_measured_references(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(PLUGINS))
    root = write_image_folder(tmp_path / "data")
    loss = {"name": "own_losses:smoothed_ce", "args": {"smoothing": 0.1}}
    # label smoothing keeps the loss above ~0.2 however well the model fits
    stages = {
        "overfit-one": {"gate": {"train_loss_below": 0.4}},
        "overfit-few": {"gate": {"train_loss_below": 0.4}},
        "full-data": {"epochs": 8},
    }
    result = cli("run", _config(tmp_path, root, loss=loss, stages=stages), "--to", "full-data",
                 "--run-dir", tmp_path / "run", "--json")  # fmt: skip
    assert result.code == 0, result.err
    got = {s["name"]: s for s in json.loads(result.out)["stages"]}
    assert {n: s["status"] for n, s in got.items()} == dict.fromkeys(LADDER, "passed")
    figures = got["preflight"]["figures"]
    assert figures["init_loss_reference"] == pytest.approx(math.log(3), rel=1e-4)
    assert "expected_init_loss" not in figures  # no formula was guessed
    # the fitted constant's val loss: about ln 3 for balanced classes, in the loss's units
    assert 1.0 < got["full-data"]["figures"]["baseline_val_loss"] < 1.2


def test_a_loss_class_is_built_with_its_args_and_measured_in_its_own_units(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(PLUGINS))
    root = write_image_folder(tmp_path / "data", per_class=6, val_per_class=2)
    loss = {"name": "own_losses:ScaledCE", "args": {"scale": 10.0}}
    result = cli("check", _config(tmp_path, root, loss=loss), "--run-dir", tmp_path / "run",
                 "--json")  # fmt: skip
    assert result.code == 0, result.err
    (preflight,) = json.loads(result.out)["stages"]
    figures = preflight["figures"]
    assert figures["init_loss_reference"] == pytest.approx(10 * math.log(3), rel=1e-4)
    assert figures["init_loss"] == pytest.approx(10 * math.log(3), rel=0.1)


def test_a_broken_init_is_caught_against_the_measured_reference(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(PLUGINS))
    root = write_image_folder(tmp_path / "data", per_class=6, val_per_class=2)
    path = _config(tmp_path, root, loss={"name": "own_losses:ScaledCE"},
                   model={"name": "own_losses:hot_logits"})  # fmt: skip
    result = cli("check", path, "--run-dir", tmp_path / "run", "--json")
    assert result.code == 1
    (preflight,) = json.loads(result.out)["stages"]
    codes = [(d["code"], d["severity"]) for d in preflight["diagnoses"]]
    assert ("unexpected_init_loss", "fail") in codes
    assert "all-zero output" in preflight["diagnoses"][0]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["bce_with_logits", "dice"])
def test_binary_segmentation_with_one_output_channel_climbs_to_full_data(
    cli, tmp_path: Path, loss: str
) -> None:
    root = write_segmentation_folder(tmp_path / "data")
    config = {
        "task": "segmentation",
        "device": "cpu",
        "data": {"name": "segmentation_folder",
                 "args": {"root": str(root), "mask_values": {0: 0, 255: 1}}, "batch_size": 8},
        "model": {"name": "tiny_unet", "args": {"width": 8}},
        "loss": {"name": loss},
        "optim": {"lr": 3.0e-3},
        "stages": {"overfit-one": {"steps": 300}, "overfit-few": {"samples": 4, "steps": 500},
                   "full-data": {"epochs": 10}},
    }  # fmt: skip
    if loss == "dice":  # 1 - Dice of one image reaches 0.01 only slowly: a looser threshold
        for stage in ("overfit-one", "overfit-few"):
            config["stages"][stage]["gate"] = {"train_loss_below": 0.05}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("run", path, "--to", "full-data", "--run-dir", tmp_path / "run", "--json")
    assert result.code == 0, result.err
    got = {s["name"]: s for s in json.loads(result.out)["stages"]}
    assert {n: s["status"] for n, s in got.items()} == dict.fromkeys(LADDER, "passed")
    assert got["preflight"]["figures"]["output_shape"] == [1, 16, 16]  # one channel for 2 classes
    metrics = json.loads((tmp_path / "run" / "full-data" / "metrics.json").read_text())
    assert metrics["scalars"]["miou"] > 0.5  # the binary logit read as two classes
