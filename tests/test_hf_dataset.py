"""hf_dataset: a Hugging Face data set from a local folder (load_from_disk, or the
imagefolder builder), built here on the fly; never downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from picture_folders import CLASSES, pattern, to_pil, write_image_folder

from dlsteps.data.hf import hf_dataset
from dlsteps.errors import ConfigError

datasets = pytest.importorskip("datasets")  # the [hf] extra, installed by make test


def _rows(count: int, seed: int) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    kinds = [i % 3 for i in range(count)]
    images = [to_pil(pattern(CLASSES[k], 16, rng), "RGB", rng) for k in kinds]
    return {"img": images, "kind": kinds, "tags": [[k, (k + 1) % 3] for k in kinds]}


def _features() -> datasets.Features:
    names = datasets.ClassLabel(names=list(CLASSES))
    return datasets.Features(
        {"img": datasets.Image(), "kind": names, "tags": datasets.Sequence(names)}
    )


def _saved(tmp_path: Path, splits: dict[str, int]) -> Path:
    parts = {s: datasets.Dataset.from_dict(_rows(n, i), features=_features())
             for i, (s, n) in enumerate(splits.items())}  # fmt: skip
    path = tmp_path / "saved"
    (datasets.DatasetDict(parts) if len(parts) > 1 else parts["train"]).save_to_disk(str(path))
    return path


def test_a_saved_data_set_gives_class_names_and_a_multi_hot_column(tmp_path: Path) -> None:
    path = _saved(tmp_path, {"train": 12, "validation": 6})
    train, val = hf_dataset(str(path), image="img", label="kind", normalize="none")
    assert (len(train), len(val)) == (12, 6)
    assert train.class_names == list(CLASSES) and train.num_classes == 3
    x, y = train[1]
    assert tuple(x.shape) == (3, 16, 16) and y == 1
    tags, _ = hf_dataset(str(path), image="img", label="tags", normalize="none", channels="grey")
    x, y = tags[1]
    assert tuple(x.shape) == (1, 16, 16) and y.tolist() == [0.0, 1.0, 1.0]


def test_one_split_is_split_by_image_content_and_a_wrong_column_is_named(tmp_path: Path) -> None:
    path = _saved(tmp_path, {"train": 40})
    train, val = hf_dataset(str(path), image="img", label="kind", val_fraction=0.25)
    assert len(train) + len(val) == 40 and 3 <= len(val) <= 18
    again, _ = hf_dataset(str(path), image="img", label="kind", val_fraction=0.25)
    assert len(again) == len(train)
    with pytest.raises(ConfigError, match=r"data\.args\.label: no column 'knd'.*'kind'"):
        hf_dataset(str(path), image="img", label="knd")
    with pytest.raises(ConfigError, match=r"data\.args\.path: no folder"):
        hf_dataset(str(tmp_path / "elsewhere"))


def test_an_image_folder_is_read_by_the_imagefolder_builder(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "tree", per_class=4, val_per_class=2)
    train, val = hf_dataset(str(root), cache_dir=str(tmp_path / "cache"), normalize="none")
    assert (len(train), len(val)) == (12, 6)
    assert train.class_names == list(CLASSES)


@pytest.mark.slow
def test_a_saved_data_set_climbs_to_full_data(cli, tmp_path: Path) -> None:
    path = _saved(tmp_path, {"train": 72, "validation": 24})
    config = {
        "task": "classification",
        "device": "cpu",
        "data": {"name": "hf_dataset", "args": {"path": str(path), "image": "img",
                 "label": "kind"}, "batch_size": 16},
        "model": {"name": "small_cnn", "args": {"width": 16}},
        "optim": {"lr": 3.0e-3},
        "stages": {"full-data": {"epochs": 6}},
    }  # fmt: skip
    file = tmp_path / "c.yaml"
    file.write_text(yaml.safe_dump(config))
    result = cli("run", file, "--to", "full-data", "--run-dir", tmp_path / "run", "--json")
    assert result.code == 0, result.err
    statuses = [s["status"] for s in json.loads(result.out)["stages"]]
    assert statuses == ["passed"] * 4
