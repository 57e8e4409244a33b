"""Data where users keep it: image folders and segmentation folders written with PIL, read
by the built-in sources, checked by preflight and climbed to full-data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from picture_folders import CLASSES, write_image_folder, write_segmentation_folder
from PIL import Image

from dlsteps.data.image_folder import image_folder
from dlsteps.data.segmentation_folder import segmentation_folder
from dlsteps.errors import DataError
from dlsteps.rundir.layout import IMAGE_STATS_JSON

LADDER = ("preflight", "overfit-one", "overfit-few", "full-data")


def _config(data: dict[str, Any], task: str, model: dict[str, Any], **extra: Any) -> dict:
    return {
        "task": task,
        "device": "cpu",
        "data": {"batch_size": 8, **data},
        "model": model,
        "optim": {"lr": 0.003},
        "stages": {
            "overfit-one": {"steps": 200},
            "overfit-few": {"samples": 4, "steps": 400},
            "full-data": {"epochs": 8},
        },
        **extra,
    }


def _write(tmp_path: Path, config: dict[str, Any], name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def _stages(result) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in json.loads(result.out)["stages"]}


def test_one_class_map_for_both_splits_and_preflight_names_the_class_val_lacks(
    cli, tmp_path: Path
) -> None:
    root = write_image_folder(tmp_path / "pets", missing_in_val=("vertical",))
    train, val = image_folder(str(root), size=16)
    assert train.class_names == val.class_names == list(CLASSES)
    assert train.num_classes == val.num_classes == 3
    assert set(train.labels) == {0, 1, 2} and set(val.labels) == {0, 1}  # no index shift
    assert all(CLASSES[y] in str(f) for f, y in zip(val.files, val.labels, strict=True))
    config = _config({"name": "image_folder", "args": {"root": str(root)}}, "classification",
                     {"name": "small_cnn", "args": {"width": 8}})  # fmt: skip
    result = cli("check", _write(tmp_path, config), "--run-dir", tmp_path / "run", "--json")
    assert result.code == 0, result.err
    (warning,) = _stages(result)["preflight"]["diagnoses"]
    assert warning["code"] == "class_missing" and warning["severity"] == "warn"
    assert warning["message"].startswith("val has no sample of train classes")
    assert "vertical" in warning["message"]


def test_the_class_missing_check_is_silent_when_both_splits_have_every_class(
    cli, tmp_path: Path
) -> None:
    root = write_image_folder(tmp_path / "pets")
    config = _config({"name": "image_folder", "args": {"root": str(root)}}, "classification",
                     {"name": "small_cnn", "args": {"width": 8}})  # fmt: skip
    result = cli("check", _write(tmp_path, config), "--run-dir", tmp_path / "run", "--json")
    assert result.code == 0, result.err
    assert _stages(result)["preflight"]["diagnoses"] == []


def test_a_folder_without_val_is_split_by_path_hash_and_stays_put_when_files_are_added(
    tmp_path: Path,
) -> None:
    root = write_image_folder(tmp_path / "flat", per_class=40, val_per_class=None)
    train, val = image_folder(str(root), val_fraction=0.25, normalize="none")
    assert not set(train.files) & set(val.files)
    assert len(train) + len(val) == 120 and 15 <= len(val) <= 45
    _, again_val = image_folder(str(root), val_fraction=0.25, normalize="none")
    assert again_val.files == val.files  # deterministic
    Image.new("RGB", (16, 16), (9, 9, 9)).save(root / "disc" / "new_one.png")
    _, grown_val = image_folder(str(root), val_fraction=0.25, normalize="none")
    assert set(val.files) <= set(grown_val.files)  # nobody changed sides
    assert set(grown_val.files) - set(val.files) <= {root / "disc" / "new_one.png"}


def test_mixed_grey_and_rgb_files_come_out_with_the_channels_asked_for(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "mixed", per_class=4, val_per_class=2, modes=("L", "RGB"))
    modes = {Image.open(f).mode for f in root.rglob("*.png")}
    assert modes == {"L", "RGB"}
    for channels, c in (("rgb", 3), ("grey", 1)):
        train, _ = image_folder(str(root), channels=channels, size=12)
        assert train.in_channels == c
        assert {tuple(train[i][0].shape) for i in range(len(train))} == {(c, 12, 12)}


def test_train_statistics_normalise_the_inputs_and_are_cached_in_the_run_directory(
    tmp_path: Path,
) -> None:
    root = write_image_folder(tmp_path / "pets", per_class=8, val_per_class=2)
    train, _ = image_folder(str(root), run_dir=tmp_path)
    x = torch.stack([train[i][0] for i in range(len(train))])  # (N, 3, 16, 16)
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3)), torch.ones(3), atol=1e-2, rtol=0)
    cache = tmp_path / IMAGE_STATS_JSON
    (entry,) = json.loads(cache.read_text()).values()
    entry["mean"], entry["std"] = [0.0, 0.0, 0.0], [2.0, 2.0, 2.0]
    cache.write_text(json.dumps({k: entry for k in json.loads(cache.read_text())}))
    cached, _ = image_folder(str(root), run_dir=tmp_path)  # read back, not measured again
    raw, _ = image_folder(str(root), normalize="none")
    torch.testing.assert_close(cached[0][0], raw[0][0] / 2)


def test_images_of_different_sizes_need_a_size(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "pets", per_class=3, val_per_class=1)
    Image.new("RGB", (20, 24)).save(root / "train" / "disc" / "odd.png")
    with pytest.raises(DataError, match=r"differ in size .*set data\.args\.size"):
        image_folder(str(root))
    train, _ = image_folder(str(root), size=[8, 10])
    assert tuple(train[0][0].shape) == (3, 8, 10)


def test_an_unreadable_image_exits_2_naming_the_file_before_training(cli, tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "pets", per_class=6, val_per_class=2)
    broken = root / "train" / "horizontal" / "broken.png"
    broken.write_bytes(b"not a png at all")
    config = _config({"name": "image_folder", "args": {"root": str(root), "size": 16,
                      "normalize": "none"}}, "classification", {"name": "small_cnn"})  # fmt: skip
    result = cli("run", _write(tmp_path, config), "--run-dir", tmp_path / "run")
    assert result.code == 2
    assert str(broken) in result.err and "Traceback" not in result.err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["preflight"]  # nothing trained


def test_segmentation_masks_are_mapped_and_resized_nearest_neighbour(tmp_path: Path) -> None:
    root = write_segmentation_folder(tmp_path / "cells", train=6, val=2, size=16)
    train, _ = segmentation_folder(str(root), mask_values={0: 0, 255: 1}, size=11)
    assert train.num_classes == 2 and train.in_channels == 3
    x, y = train[0]
    assert tuple(x.shape) == (3, 11, 11) and tuple(y.shape) == (11, 11) and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) == {0, 1}  # no blended class values
    raw = np.asarray(Image.open(train.pairs[0][1]))
    rows = ((np.arange(11) + 0.5) * 16 / 11).astype(int)
    np.testing.assert_array_equal(y.numpy(), (raw[rows][:, rows] == 255).astype(np.int64))


def test_a_palette_mask_keeps_its_indices_and_ignore_index_passes_through(tmp_path: Path) -> None:
    root = write_segmentation_folder(tmp_path / "voc", train=4, val=2, palette=True,
                                     layout="kind/split")  # fmt: skip
    mask_path = root / "masks" / "train" / "train_000.png"
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[0, :3] = 255  # a VOC-style boundary
    img = Image.fromarray(mask, "P")
    img.putpalette(Image.open(mask_path).getpalette())
    img.save(mask_path)
    train, _ = segmentation_folder(str(root), ignore_index=255)
    assert train.num_classes == 2  # the largest class in the masks, 255 left out
    y = train[[p[1] for p in train.pairs].index(mask_path)][1]
    assert y[0, :3].tolist() == [255, 255, 255] and set(torch.unique(y).tolist()) <= {0, 1, 255}


def test_a_mask_value_outside_mask_values_names_the_mask(tmp_path: Path) -> None:
    root = write_segmentation_folder(tmp_path / "cells", train=4, val=2)
    train, _ = segmentation_folder(str(root), mask_values={0: 0, 128: 1}, ignore_index=254)
    with pytest.raises(DataError, match=r"train_000\.png has values \[255\]"):
        train[0]


def test_unpaired_images_and_masks_exit_2_naming_every_file(cli, tmp_path: Path) -> None:
    root = write_segmentation_folder(tmp_path / "cells", train=6, val=2, layout="flat")
    (root / "masks" / "train_001.png").unlink()
    (root / "masks" / "train_004.png").rename(root / "masks" / "stray.png")
    config = _config({"name": "segmentation_folder", "args": {"root": str(root)}},
                     "segmentation", {"name": "tiny_unet"})  # fmt: skip
    result = cli("run", _write(tmp_path, config), "--run-dir", tmp_path / "run")
    assert result.code == 2 and "Traceback" not in result.err
    assert "2 images without a mask" in result.err
    for name in ("images/train_001.jpg", "images/train_004.jpg", "masks/stray.png"):
        assert name in result.err


FOLDERS = {
    "image_folder_missing_val_class_mixed_modes": (
        "classification",
        lambda p: write_image_folder(p, missing_in_val=("vertical",), modes=("RGB", "L")),
        {"name": "image_folder", "args": {"size": 16}},
        {"name": "small_cnn", "args": {"width": 16}},
    ),
    "segmentation_0_255": (
        "segmentation",
        lambda p: write_segmentation_folder(p),
        {"name": "segmentation_folder", "args": {"mask_values": {0: 0, 255: 1}}},
        {"name": "tiny_unet", "args": {"width": 8}},
    ),
    "segmentation_palette": (
        "segmentation",
        lambda p: write_segmentation_folder(p, palette=True, layout="kind/split"),
        {"name": "segmentation_folder", "args": {}},
        {"name": "tiny_unet", "args": {"width": 8}},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", FOLDERS)
def test_each_folder_climbs_from_preflight_to_full_data(cli, tmp_path: Path, case: str) -> None:
    task, write, data, model = FOLDERS[case]
    root = write(tmp_path / "data")
    data = {**data, "args": {**data["args"], "root": str(root)}}
    path = _write(tmp_path, _config(data, task, model))
    result = cli("run", path, "--to", "full-data", "--run-dir", tmp_path / "run", "--json")
    assert result.code == 0, result.err
    stages = _stages(result)
    assert {name: s["status"] for name, s in stages.items()} == dict.fromkeys(LADDER, "passed")
    for s in stages.values():
        assert not [d for d in s["diagnoses"] if d["severity"] == "fail"], s
    assert stages["full-data"]["figures"]["baseline_val_loss"] > 0
    names = json.loads((tmp_path / "run" / "full-data" / "metrics.json").read_text())
    if task == "classification":  # the folder names reach the metrics and the report
        assert names["class_names"] == list(CLASSES)


INIT_FOLDERS = {
    "image_folder": ("classification", lambda p: write_image_folder(p, missing_in_val=("disc",))),
    "image_folder_flat": (
        "classification",
        lambda p: write_image_folder(p, val_per_class=None, modes=("L",)),
    ),
    "segmentation_0_255": ("segmentation", lambda p: write_segmentation_folder(p)),
    "segmentation_palette": (
        "segmentation",
        lambda p: write_segmentation_folder(p, palette=True, layout="kind/split"),
    ),
    "segmentation_flat": ("segmentation", lambda p: write_segmentation_folder(p, layout="flat")),
}


@pytest.mark.parametrize("case", INIT_FOLDERS)
def test_init_from_folder_writes_a_config_that_check_passes(cli, tmp_path: Path, case) -> None:
    task, write = INIT_FOLDERS[case]
    root = write(tmp_path / "data")
    result = cli("init", tmp_path / "project", "--task", task, "--from-folder", root)
    assert result.code == 0, result.err
    config = tmp_path / "project" / "dlsteps.yaml"
    text = config.read_text()
    assert str(root) in text and "#" in text
    if case == "image_folder_flat":
        assert "channels: grey" in text
    if case == "segmentation_0_255":
        assert "mask_values: {0: 0, 255: 1}" in text
    checked = cli("check", config, "--run-dir", tmp_path / "run", "--json")
    assert checked.code == 0, checked.err
    assert _stages(checked)["preflight"]["status"] == "passed"


def test_init_from_folder_refuses_what_it_cannot_read(cli, tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", per_class=2, val_per_class=1)
    result = cli("init", tmp_path / "p", "--task", "multilabel", "--from-folder", root)
    assert result.code == 2 and "Hugging Face" in result.err
    missing = cli("init", tmp_path / "q", "--from-folder", tmp_path / "nowhere")
    assert missing.code == 2 and "no folder at" in missing.err
    assert not (tmp_path / "p").exists()
