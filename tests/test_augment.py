"""The augment stage's data engineering: joint image/mask geometry, train-only augmentation,
class weights from the train label counts."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from dlsteps.config import load_config
from dlsteps.data.augment import augment_train, class_weights
from dlsteps.data.shapes import shapes
from dlsteps.data.stats import data_stats
from dlsteps.data.tensors import TensorPairs
from dlsteps.logbook.curves import read_curves

IGNORE = 255


def _mask_as_image(n: int = 6, size: int = 32) -> TensorPairs:
    """Real shapes masks, with an image whose every channel *is* the mask (as floats): any
    misalignment between the transformed image and mask shows up as a value mismatch."""
    train, _ = shapes(num_train=n, num_val=1, size=size, num_classes=4, max_shapes=3, seed=3)
    masks = train.targets
    images = masks.float()[:, None].repeat(1, 3, 1, 1)  # (N, 3, H, W)
    return TensorPairs(images, masks, 4)


def _interior(mask: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Pixels whose (2r+1)² neighbourhood holds one label: bilinear resampling of the image
    must reproduce that label there exactly."""
    m = mask.float()[None, None]
    pad = torch.nn.functional.pad(m, (radius,) * 4, mode="replicate")
    k = 2 * radius + 1
    hi = torch.nn.functional.max_pool2d(pad, k, stride=1)
    lo = -torch.nn.functional.max_pool2d(-pad, k, stride=1)
    return (hi == lo)[0, 0] & (mask != IGNORE)


GEOMETRIC = [
    {"hflip": {"p": 1.0}},
    {"vflip": {"p": 1.0}},
    {"rot90": {}},
    {"rotate": {"degrees": 30}},
    {"scale_crop": {"scale": [0.3, 0.6]}},
]


@pytest.mark.parametrize("entry", GEOMETRIC, ids=lambda e: next(iter(e)))
def test_image_and_mask_stay_aligned_under_every_geometric_augmentation(entry) -> None:
    data = _mask_as_image()
    augmented = augment_train(data, [entry], mask=True, ignore_index=IGNORE)
    torch.manual_seed(0)
    moved = 0
    for i in range(len(data)):
        for _ in range(3):
            image, mask = augmented[i]
            assert mask.dtype == torch.int64 and mask.shape == (32, 32)
            assert type(image) is torch.Tensor and type(mask) is torch.Tensor
            inside = _interior(mask)
            assert inside.sum() > 100
            torch.testing.assert_close(image[0][inside], mask[inside].float(), atol=1e-4, rtol=0)
            moved += int(not torch.equal(mask, data.targets[i]))
    assert moved > 0, "the augmentation never changed a mask: the test would prove nothing"


def test_flips_are_exact_and_rotations_fill_the_mask_with_ignore_index() -> None:
    data = _mask_as_image(n=2)
    image, mask = augment_train(data, [{"hflip": {"p": 1.0}}], mask=True, ignore_index=IGNORE)[1]
    assert torch.equal(mask, data.targets[1].flip(-1))
    torch.manual_seed(0)
    image, mask = augment_train(
        data, [{"rotate": {"degrees": [40, 40]}}], mask=True, ignore_index=IGNORE
    )[0]
    corners = mask[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.all(corners == IGNORE)  # rotated in from outside: excluded from the loss
    assert torch.all(image[:, 0, 0] == 0.0)


def test_photometric_augmentations_change_the_image_never_the_mask() -> None:
    train, _ = shapes(num_train=4, num_val=1, size=16, seed=1)  # inputs normalised to ~[-1, 1]
    entries = [
        {"color_jitter": {"brightness": 0.5, "contrast": 0.5, "value_range": [-1, 1]}},
        {"gaussian_noise": {"sigma": 0.2}},
    ]
    augmented = augment_train(train, entries, mask=True, ignore_index=IGNORE)
    torch.manual_seed(0)
    image, mask = augmented[2]
    x, y = train[2]
    assert torch.equal(mask, y)
    assert not torch.allclose(image, x)
    assert image.min() < -0.5  # not clamped to [0, 1] as ColorJitter alone would do


def test_classification_augments_the_input_and_keeps_the_label() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    data = TensorPairs(x, torch.tensor([7]), 10)
    image, label = augment_train(data, [{"hflip": {"p": 1.0}}], mask=False, ignore_index=IGNORE)[0]
    assert torch.equal(image, x[0].flip(-1))
    assert int(label) == 7


def test_a_config_that_would_augment_val_exits_2_naming_the_key(cli, write_config) -> None:
    cfg = write_config(
        stages={"augment": {"augmentations": {"train": ["hflip"], "val": ["hflip"]}}}
    )
    result = cli("check", cfg)
    assert result.code == 2
    assert "stages.augment.augmentations" in result.err and "'val'" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("rotat", "Did you mean 'rotate'?"),
        ({"rotate": {"degree": 3}}, "Did you mean 'degrees'?"),
        ({"gaussian_noise": {"sigma": -1}}, "sigma must be >= 0"),
        ({"scale_crop": {"size": [8, 8]}}, "unknown argument 'size'. Arguments: scale, ratio"),
    ],
)
def test_a_bad_augmentation_is_refused_at_config_time(entry, says, tmp_path: Path) -> None:
    from dlsteps.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"stages": {"augment": {"augmentations": [entry]}}}))
    with pytest.raises(ConfigError, match=r"stages\.augment\.augmentations") as info:
        load_config(path)
    assert says in str(info.value)


def test_class_weights_follow_the_formulas_on_hand_made_counts() -> None:
    counts = {0: 60, 1: 30, 2: 10, IGNORE: 99}  # class 3 never appears in train
    # frequencies .6 .3 .1; median .3 -> median/f; inverse 1 / (C f)
    assert class_weights("median", counts, 3) == pytest.approx([0.5, 1.0, 3.0])
    assert class_weights("auto", counts, 3) == pytest.approx([0.5, 1.0, 3.0])
    assert class_weights("inverse", counts, 3) == pytest.approx([1 / 1.8, 1 / 0.9, 1 / 0.3])
    assert class_weights("median", counts, 4) == pytest.approx([0.5, 1.0, 3.0, 0.0])
    assert class_weights([1, 2, 3], counts, 3) == [1.0, 2.0, 3.0]
    assert class_weights("none", counts, 3) is None


def test_auto_class_weights_match_a_hand_count_of_the_train_masks(tmp_path: Path) -> None:
    train, val = shapes(num_train=40, num_val=8, size=16, num_classes=4, seed=5)
    stats = data_stats(train, val, labels=True, cache=tmp_path / "data_stats.json")
    cached = json.loads((tmp_path / "data_stats.json").read_text())["train"]["label_counts"]
    assert {int(k): v for k, v in cached.items()} == stats.train.label_counts
    counts = np.bincount(train.targets.numpy().ravel(), minlength=4)
    freq = counts / counts.sum()
    median = statistics.median(freq.tolist())
    expected = [median / f for f in freq]
    assert class_weights("auto", stats.train.label_counts, 4) == pytest.approx(expected)


def test_class_weights_of_the_wrong_length_exit_2(cli, write_config, tmp_path: Path) -> None:
    cfg = write_config(
        stages={"augment": {"epochs": 1, "init_from": None, "class_weights": [1.0, 2.0]}}
    )
    result = cli("stage", "augment", "-c", cfg, "--run-dir", tmp_path / "run")
    assert result.code == 2
    assert "class_weights: 2 weights given for 3 classes" in result.err


@pytest.mark.slow
def test_the_augment_stage_augments_train_but_never_val(cli, write_config, tmp_path) -> None:
    """augment and scale-up both start from full-data's weights with a learning rate too
    small to move them; augment flips every train image, scale-up augments nothing. Their
    val losses must be identical step for step (val is never augmented), their first train
    losses must differ (train is)."""
    frozen = {"init_from": "full-data", "steps": 6, "optim": {"name": "adam", "lr": 1.0e-12}}
    cfg = write_config(
        stages={
            "full-data": {"epochs": 1},
            "augment": {
                **frozen,
                "augmentations": [{"vflip": {"p": 1.0}}, {"hflip": {"p": 1.0}}],
                "class_weights": "none",
                "gate": {"tolerance": 0.05},
            },
            "scale-up": {**frozen, "gate": {"tolerance": 0.05}},
        }
    )
    run_dir = tmp_path / "run"
    result = cli("run", cfg, "--from", "full-data", "--run-dir", run_dir, "--keep-going", "-q")
    assert result.code in (0, 1), result.err
    aug, plain = read_curves(run_dir / "augment"), read_curves(run_dir / "scale-up")
    assert len(aug["val/loss"]) == 6
    np.testing.assert_allclose(aug["val/loss"].values, plain["val/loss"].values, rtol=1e-5)
    assert abs(aug["train/loss"].values[0] - plain["train/loss"].values[0]) > 1e-3
    summary = json.loads((run_dir / "summary.json").read_text())
    entry = {s["name"]: s for s in summary["stages"]}["augment"]
    assert any("train-only augmentation: vflip(p=1.0), hflip(p=1.0)" in n for n in entry["notes"])
