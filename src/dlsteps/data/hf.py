"""``hf_dataset``: a Hugging Face ``datasets`` data set from a local folder, never downloaded.

    data: {name: hf_dataset, args: {path: DIR, image: image, label: label}}

``DIR`` is either a data set saved with ``save_to_disk`` (read with ``load_from_disk``)
or a folder of image files that ``load_dataset("imagefolder", data_dir=DIR)`` reads
(class folders, or a ``metadata.csv``/``metadata.jsonl``). Hugging Face is kept offline
(``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE``) and ``path`` must be a local folder.
The label column's feature decides the target: a ``ClassLabel`` (or integers) is a
class, a list of ``ClassLabel`` a multi-hot vector (``task: multilabel``), an ``Image`` a
segmentation mask, floats a regression target. Rows are decoded in ``__getitem__``, so
in the DataLoader's workers. Needs the optional extra: ``pip install 'dlsteps[hf]'``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dlsteps.data.decode import Channels, channels_option, resize_image, resize_mask, size_option
from dlsteps.data.files import check_fraction, existing_root
from dlsteps.data.normalize import Normalization, normalization
from dlsteps.data.segmentation_folder import MaskMap
from dlsteps.errors import ConfigError, DataError, did_you_mean

VAL_SPLITS = ("validation", "val", "valid", "test")
_PIL_MODES = {"rgb": "RGB", "grey": "L"}


def _datasets() -> Any:
    """The ``datasets`` package, offline; a missing extra is a config error."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError(
            "data.name: hf_dataset needs the Hugging Face datasets package: "
            "pip install 'dlsteps[hf]'"
        ) from exc
    return datasets


class HFItems(Dataset):
    """``(image (C, H, W) float32, target)`` items of one split of a Hugging Face set."""

    def __init__(
        self,
        rows: Any,
        image: str,
        label: str,
        kind: str,
        channels: Channels,
        size: tuple[int, int] | None,
        class_names: Sequence[str] | None,
        num_classes: int | None,
        mask_map: MaskMap | None,
    ) -> None:
        self.rows, self.image, self.label, self.kind = rows, image, label, kind
        self.channels, self.size, self.mask_map = channels, size, mask_map
        self.in_channels = 3 if channels == "rgb" else 1
        self.class_names = list(class_names) if class_names else None
        self.num_classes = num_classes
        self.normalization: Normalization | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _image(self, value: Any, index: int) -> torch.Tensor:
        if not isinstance(value, Image.Image):
            raise DataError(
                f"row {index}: column '{self.image}' holds {type(value).__name__}, not an image"
            )
        array = np.asarray(value.convert(_PIL_MODES[self.channels]))
        # (H, W) or (H, W, 3) uint8 -> (C, H, W)
        return torch.from_numpy(array.copy()).reshape(*array.shape[:2], -1).permute(2, 0, 1)

    def raw(self, index: int) -> tuple[torch.Tensor, tuple[int, int]]:
        image = self._image(self.rows[index][self.image], index)
        x = resize_image(image, self.size).float() / 255.0
        return x, (image.shape[-2], image.shape[-1])

    def _target(self, value: Any, index: int) -> Any:
        if self.kind == "multilabel":  # class indices -> a multi-hot (C,) float vector
            hot = torch.zeros(self.num_classes or 0)
            hot[list(value)] = 1.0
            return hot
        if self.kind == "mask":
            assert self.mask_map is not None
            array = np.asarray(value).astype(np.int64)
            mask = self.mask_map(array, Path(f"row {index}"))
            return resize_mask(torch.from_numpy(mask), self.size)  # (H, W) int64
        if self.kind == "value":  # (D,): a scalar target becomes (1,), like a model's output
            return torch.as_tensor(value, dtype=torch.float32).reshape(-1)
        return int(value)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        row = self.rows[index]
        x = resize_image(self._image(row[self.image], index), self.size).float() / 255.0
        if self.normalization is not None:
            x = self.normalization(x)
        return x, self._target(row[self.label], index)


def hf_dataset(
    path: str | None = None,
    image: str = "image",
    label: str = "label",
    train_split: str = "train",
    val_split: str | None = None,
    val_fraction: float | None = None,
    size: int | Sequence[int] | None = None,
    channels: str = "rgb",
    normalize: str | Mapping[str, Sequence[float]] = "train",
    mask_values: Mapping[Any, Any] | None = None,
    cache_dir: str | None = None,
    seed: int = 0,
    run_dir: Path | None = None,
    num_workers: int = 0,
    ignore_index: int = 255,
) -> tuple[HFItems, HFItems]:
    """Train and val of a local Hugging Face data set; ``image``/``label`` name the columns;
    ``val_split`` defaults to the first of validation, val, valid, test, and without one
    ``val_fraction`` (0.2) of the train rows go to val, by a hash of each image's bytes."""
    folder = existing_root(path, "data.args.path")
    hf = _datasets()
    loaded = _load(hf, folder, cache_dir)
    train_rows, val_rows = _splits(hf, loaded, train_split, val_split, val_fraction, image)
    columns = list(train_rows.features)
    for key, column in (("image", image), ("label", label)):
        if column not in columns:
            raise ConfigError(
                f"data.args.{key}: no column '{column}' in {folder}."
                f"{did_you_mean(column, columns)} Columns: {', '.join(columns)}"
            )
    kind, names, classes = _label_kind(hf, train_rows, val_rows, label)
    chan, shape = channels_option(channels), size_option(size)
    mask_map = MaskMap(mask_values, ignore_index) if kind == "mask" else None
    if kind == "mask":
        classes = mask_map.num_classes() if mask_map is not None else None
    sets = [
        HFItems(rows, image, label, kind, chan, shape, names, classes, mask_map)
        for rows in (train_rows, val_rows)
    ]
    if kind == "mask" and classes is None:
        raise ConfigError(
            "data.args.mask_values: a mask column needs mask_values (stored value -> class), "
            "so the class count is known"
        )
    norm = normalization(
        normalize,
        reader=sets[0].raw,
        count=len(sets[0]),
        channels=sets[0].in_channels,
        describe=repr(("hf_dataset", str(folder.resolve()), image, chan, shape, len(sets[0]))),
        run_dir=run_dir,
        num_workers=num_workers,
        seed=seed,
        check_sizes=shape is None,
        names=lambda i: f"train row {i}",
    )
    for ds in sets:
        ds.normalization = norm
    return sets[0], sets[1]


def _load(hf: Any, folder: Path, cache_dir: str | None) -> Any:
    """``load_from_disk`` for a saved data set, else the ``imagefolder`` builder."""
    saved = any((folder / name).exists() for name in ("dataset_dict.json", "state.json"))
    try:
        if saved:
            return hf.load_from_disk(str(folder))
        return hf.load_dataset("imagefolder", data_dir=str(folder), cache_dir=cache_dir)
    except Exception as exc:
        how = "load_from_disk" if saved else 'load_dataset("imagefolder", data_dir=...)'
        raise DataError(
            f"data.args.path: {how} could not read {folder}: {type(exc).__name__}: {exc}"
        ) from exc


def _splits(
    hf: Any,
    loaded: Any,
    train_split: str,
    val_split: str | None,
    val_fraction: float | None,
    image: str,
) -> tuple[Any, Any]:
    if isinstance(loaded, hf.DatasetDict):
        names = list(loaded)
        if train_split not in loaded:
            raise ConfigError(
                f"data.args.train_split: no split '{train_split}'."
                f"{did_you_mean(train_split, names)} Splits: {', '.join(names)}"
            )
        chosen = val_split or next((s for s in VAL_SPLITS if s in loaded), None)
        if chosen is not None:
            if chosen not in loaded:
                raise ConfigError(
                    f"data.args.val_split: no split '{chosen}'.{did_you_mean(chosen, names)} "
                    f"Splits: {', '.join(names)}"
                )
            if val_fraction is not None:
                raise ConfigError(
                    f"data.args.val_fraction: the data set has its own val split '{chosen}'; "
                    "remove val_fraction"
                )
            return loaded[train_split], loaded[chosen]
        loaded = loaded[train_split]
    elif val_split is not None:
        raise ConfigError("data.args.val_split: the data set at this path has no splits")
    fraction = 0.2 if val_fraction is None else val_fraction
    check_fraction(fraction)
    if image not in loaded.features:
        return loaded, loaded.select([])  # the missing column is named by the caller
    raw = loaded.cast_column(image, hf.Image(decode=False))[image]
    val = [i for i, cell in enumerate(raw) if _in_val(cell, fraction)]
    chosen = set(val)
    train = [i for i in range(len(raw)) if i not in chosen]
    return loaded.select(train), loaded.select(val)


def _in_val(cell: Mapping[str, Any], fraction: float) -> bool:
    """A row goes to val by a hash of its image's bytes (or file path): stable when rows
    are added, and equal images land on the same side."""
    content = cell.get("bytes") or str(cell.get("path") or "").encode()
    digest = hashlib.blake2b(content, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def _label_kind(
    hf: Any, train: Any, val: Any, label: str
) -> tuple[str, list[str] | None, int | None]:
    """What the label column holds: (kind, class names, class count)."""
    feature = train.features[label]
    inner = getattr(feature, "feature", None)
    if isinstance(feature, hf.ClassLabel):
        return "class", list(feature.names), feature.num_classes
    if isinstance(inner, hf.ClassLabel):
        return "multilabel", list(inner.names), inner.num_classes
    if isinstance(feature, hf.Image):
        return "mask", None, None
    dtype = getattr(feature, "dtype", None) or getattr(inner, "dtype", "")
    if isinstance(feature, hf.Value) and dtype.startswith(("int", "uint")):
        largest = max(max(train[label], default=0), max(val[label], default=0))
        return "class", None, int(largest) + 1
    if dtype.startswith("float"):
        first = train[0][label] if len(train) else 0.0
        return "value", None, len(first) if isinstance(first, list) else 1
    raise ConfigError(
        f"data.args.label: column '{label}' holds {feature}; expected a ClassLabel, integers, "
        "a list of ClassLabel (multi-label), an Image (a mask) or floats"
    )
