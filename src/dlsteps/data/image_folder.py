"""``image_folder``: classification data as torchvision's ``ImageFolder`` keeps it.

    ROOT/train/<class>/*.jpg   and   ROOT/val/<class>/*.jpg     (val, valid or validation)
    ROOT/<class>/*.jpg                                           (split by val_fraction)
    ROOT/train/<class>/*.jpg   alone                             (train split by val_fraction)

One class map for both splits: the sorted union of the class folders of train and val,
never one per split, so a class missing from val keeps its index (preflight names it).
Files are listed in ``__init__``; each item is decoded, resized and normalised in
``__getitem__``, so decoding happens in the DataLoader's workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dlsteps.data.decode import (
    Channels,
    channels_option,
    read_image,
    resize_image,
    size_option,
    to_float,
)
from dlsteps.data.files import (
    check_fraction,
    existing_root,
    image_files,
    in_val,
    relative_key,
    val_folder,
)
from dlsteps.data.normalize import Normalization, normalization
from dlsteps.errors import DataError


class ImageFiles(Dataset):
    """``(image (C, H, W) float32, class index)`` items from a list of image files."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int],
        class_names: Sequence[str],
        channels: Channels,
        size: tuple[int, int] | None,
    ) -> None:
        self.files, self.labels = list(files), list(labels)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.in_channels = 3 if channels == "rgb" else 1
        self.channels, self.size = channels, size
        self.normalization: Normalization | None = None

    def __len__(self) -> int:
        return len(self.files)

    def raw(self, index: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """The resized image in [0, 1] and the file's own (height, width)."""
        image = read_image(self.files[index], self.channels)
        return to_float(resize_image(image, self.size)), (image.shape[-2], image.shape[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, _ = self.raw(index)
        if self.normalization is not None:
            x = self.normalization(x)
        return x, self.labels[index]  # (C, H, W) float32, int


def image_folder(
    root: str | None = None,
    size: int | Sequence[int] | None = None,
    channels: str = "rgb",
    val_fraction: float | None = None,
    normalize: str | Mapping[str, Sequence[float]] = "train",
    seed: int = 0,
    run_dir: Path | None = None,
    num_workers: int = 0,
) -> tuple[ImageFiles, ImageFiles]:
    """Train and val from a class-per-folder tree. ``size`` resizes every image (one side
    for a square, or ``[height, width]``); ``channels`` converts each file to ``rgb`` or
    ``grey``; ``normalize`` is ``train`` (per-channel statistics of the train images,
    cached in the run directory), ``imagenet``, ``none`` or ``{mean, std}``."""
    base = existing_root(root)
    chan, shape = channels_option(channels), size_option(size)
    train_dir = base / "train" if (base / "train").is_dir() else base
    val_dir = val_folder(base) if train_dir != base else None
    if val_dir is not None and val_fraction is not None:
        raise DataError(
            f"data.args.val_fraction: {base} has its own val folder ({val_dir.name}/); "
            "remove val_fraction, or the val folder"
        )
    fraction = 0.2 if val_fraction is None else val_fraction
    check_fraction(fraction)
    train_classes = _class_folders(train_dir)
    val_classes = _class_folders(val_dir) if val_dir is not None else {}
    names = sorted(set(train_classes) | set(val_classes))
    if not names:
        loose = image_files(train_dir)
        raise DataError(
            f"data.args.root: no class folders with images in {train_dir}"
            + (f" ({len(loose)} images lie there without a class folder)" if loose else "")
            + "; image_folder expects ROOT/<class>/*, or ROOT/train/<class>/* and "
            "ROOT/val/<class>/*"
        )
    index = {name: i for i, name in enumerate(names)}
    train, val = ([], []), ([], [])
    for name, files in train_classes.items():
        for file in files:
            side = val if val_dir is None and in_val(relative_key(file, base), fraction) else train
            side[0].append(file)
            side[1].append(index[name])
    for name, files in val_classes.items():
        val[0].extend(files)
        val[1].extend([index[name]] * len(files))
    sets = [ImageFiles(f, y, names, chan, shape) for f, y in (train, val)]
    if len(sets[0]):
        norm = normalization(
            normalize,
            reader=sets[0].raw,
            count=len(sets[0]),
            channels=sets[0].in_channels,
            describe=repr(
                ("image_folder", str(base.resolve()), chan, shape, len(sets[0]), sets[0].files[-1])
            ),
            run_dir=run_dir,
            num_workers=num_workers,
            seed=seed,
            check_sizes=shape is None,
            names=lambda i: str(sets[0].files[i]),
        )
        for ds in sets:
            ds.normalization = norm
    return sets[0], sets[1]


def _class_folders(folder: Path | None) -> dict[str, list[Path]]:
    """Class name → its image files, for every subfolder of ``folder`` that has images."""
    if folder is None:
        return {}
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if files := image_files(sub):
            found[sub.name] = files
    return found
