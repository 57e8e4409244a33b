"""``segmentation_folder``: images and label masks in two folders, paired by file stem.

    ROOT/train/images/a.jpg  ROOT/train/masks/a.png  ROOT/val/images/...  ROOT/val/masks/...
    ROOT/images/train/a.jpg  ROOT/masks/train/a.png  ROOT/images/val/...  ROOT/masks/val/...
    ROOT/images/a.jpg        ROOT/masks/a.png        (split by val_fraction)

Masks are PNGs whose values are read as they are stored: palette indices (VOC style) or
grey values. ``mask_values`` maps stored values to classes (``{0: 0, 255: 1}``); a value
outside the mapping is an error naming the file, unless it equals ``data.ignore_index``.
Masks are resized nearest-neighbour only. Every image without its mask, and every mask
without its image, is named in one error before anything trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dlsteps.data.decode import (
    Channels,
    channels_option,
    read_image,
    read_mask,
    resize_image,
    resize_mask,
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
from dlsteps.errors import ConfigError, DataError

Pairs = list[tuple[Path, Path]]
MAX_NAMED = 5  # unpaired files listed by name in the error; the rest are counted


class MaskMap:
    """Stored mask value → class index, as one lookup table (values up to 65535)."""

    def __init__(self, values: Mapping[Any, Any] | None, ignore_index: int) -> None:
        self.ignore_index = ignore_index
        self.values = _mapping(values) if values else None
        self._table: np.ndarray | None = None
        if self.values is not None:
            table = np.full(max(self.values) + 1, -1, dtype=np.int64)
            for stored, label in self.values.items():
                table[stored] = label
            self._table = table

    def __call__(self, mask: np.ndarray, path: Path) -> np.ndarray:
        if self._table is None:
            return mask
        inside = mask < len(self._table)
        out = np.where(inside, self._table[np.where(inside, mask, 0)], -1)
        unmapped = (out < 0) & (mask != self.ignore_index)
        if unmapped.any():
            found = sorted(np.unique(mask[unmapped]).tolist())
            raise DataError(
                f"mask {path} has values {found[:10]} that data.args.mask_values does not map "
                f"(it maps {sorted(self.values or {})}; data.ignore_index "
                f"{self.ignore_index} is kept as it is). Map every stored value to a class; "
                "masks saved as JPEG blend values at edges: save them as PNG"
            )
        return np.where(out < 0, self.ignore_index, out)

    def num_classes(self) -> int | None:
        labels = [v for v in (self.values or {}).values() if v != self.ignore_index]
        return max(labels) + 1 if labels else None


def _mapping(values: Mapping[Any, Any]) -> dict[int, int]:
    try:
        out = {int(k): int(v) for k, v in values.items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"data.args.mask_values: expected {{stored value: class}} with integers, e.g. "
            f"{{0: 0, 255: 1}}, got {values!r}"
        ) from exc
    if any(k < 0 or k > 65535 for k in out) or any(v < 0 for v in out.values()):
        raise ConfigError(
            f"data.args.mask_values: stored values lie in [0, 65535] and classes are >= 0, "
            f"got {values!r}"
        )
    return out


class SegmentationFiles(Dataset):
    """``(image (C, H, W) float32, mask (H, W) int64)`` items from paired files."""

    def __init__(
        self,
        pairs: Pairs,
        channels: Channels,
        size: tuple[int, int] | None,
        mask_map: MaskMap,
        num_classes: int | None,
        class_names: Sequence[str] | None,
    ) -> None:
        self.pairs = pairs
        self.channels, self.size, self.mask_map = channels, size, mask_map
        self.in_channels = 3 if channels == "rgb" else 1
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else None
        self.normalization: Normalization | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def raw(self, index: int) -> tuple[torch.Tensor, tuple[int, int]]:
        image = read_image(self.pairs[index][0], self.channels)
        return to_float(resize_image(image, self.size)), (image.shape[-2], image.shape[-1])

    def mask(self, index: int) -> torch.Tensor:
        """The mask of item ``index`` as classes, at the file's own size."""
        path = self.pairs[index][1]
        return torch.from_numpy(self.mask_map(read_mask(path), path))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path, self.channels)
        mask = self.mask(index)
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise DataError(
                f"image {image_path} is {image.shape[-2]}x{image.shape[-1]} but its mask "
                f"{mask_path} is {mask.shape[0]}x{mask.shape[1]}: they must be the same size"
            )
        x = to_float(resize_image(image, self.size))
        if self.normalization is not None:
            x = self.normalization(x)
        return x, resize_mask(mask, self.size)  # (C, H, W) float32, (H, W) int64


def segmentation_folder(
    root: str | None = None,
    mask_values: Mapping[Any, Any] | None = None,
    size: int | Sequence[int] | None = None,
    channels: str = "rgb",
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    mask_suffix: str = "",
    val_fraction: float | None = None,
    normalize: str | Mapping[str, Sequence[float]] = "train",
    ignore_index: int = 255,
    seed: int = 0,
    run_dir: Path | None = None,
    num_workers: int = 0,
) -> tuple[SegmentationFiles, SegmentationFiles]:
    """Train and val pairs of an image and its mask. ``num_classes`` comes from
    ``class_names``, else from ``mask_values``, else from the largest class in the masks
    (read once); ``mask_suffix`` pairs ``a.jpg`` with ``a<suffix>.png``."""
    base = existing_root(root)
    chan, shape = channels_option(channels), size_option(size)
    dirs = layout(base)
    if dirs[1] is not None and val_fraction is not None:
        raise DataError(
            f"data.args.val_fraction: {base} has its own val folders; remove val_fraction"
        )
    fraction = 0.2 if val_fraction is None else val_fraction
    check_fraction(fraction)
    train_dirs, val_dirs = dirs
    train_pairs = paired(*train_dirs, mask_suffix, base)
    val_pairs = paired(*val_dirs, mask_suffix, base) if val_dirs is not None else []
    if val_dirs is None:
        keep = [p for p in train_pairs if not in_val(relative_key(p[0], base), fraction)]
        val_pairs = [p for p in train_pairs if in_val(relative_key(p[0], base), fraction)]
        train_pairs = keep
    mask_map = MaskMap(mask_values, ignore_index)
    if class_names is not None and num_classes is not None and len(class_names) != num_classes:
        raise ConfigError(
            f"data.args.class_names: {len(class_names)} names for num_classes {num_classes}"
        )
    classes = (
        num_classes
        or (len(class_names) if class_names else None)
        or mask_map.num_classes()
        or _largest_class(train_pairs + val_pairs, mask_map, num_workers) + 1
    )
    sets = [
        SegmentationFiles(p, chan, shape, mask_map, classes, class_names)
        for p in (train_pairs, val_pairs)
    ]
    if train_pairs:
        norm = normalization(
            normalize,
            reader=sets[0].raw,
            count=len(train_pairs),
            channels=sets[0].in_channels,
            describe=repr(
                (
                    "segmentation_folder",
                    str(base.resolve()),
                    chan,
                    shape,
                    len(train_pairs),
                    str(train_pairs[-1][0]),
                )
            ),
            run_dir=run_dir,
            num_workers=num_workers,
            seed=seed,
            check_sizes=shape is None,
            names=lambda i: str(train_pairs[i][0]),
        )
        for ds in sets:
            ds.normalization = norm
    return sets[0], sets[1]


def layout(base: Path) -> tuple[tuple[Path, Path], tuple[Path, Path] | None]:
    """(train images, train masks) and (val images, val masks) folders, or None for val
    when the root has a single images/ + masks/ pair to split."""
    if (base / "train" / "images").is_dir():
        val = val_folder(base)
        val_dirs = (val / "images", val / "masks") if val is not None else None
        return (base / "train" / "images", base / "train" / "masks"), val_dirs
    if (base / "images").is_dir():
        images, masks = base / "images", base / "masks"
        if (images / "train").is_dir():
            val = val_folder(images)
            val_dirs = (val, masks / val.name) if val is not None else None
            return (images / "train", masks / "train"), val_dirs
        return (images, masks), None
    raise DataError(
        f"data.args.root: {base} has neither train/images/ nor images/; segmentation_folder "
        "expects ROOT/train/images + ROOT/train/masks (and ROOT/val/...), ROOT/images/train + "
        "ROOT/masks/train (and .../val), or ROOT/images + ROOT/masks"
    )


def paired(images: Path, masks: Path, suffix: str, base: Path) -> Pairs:
    """Each image with the mask of the same stem (plus ``suffix``); every unpaired file
    of either folder is named in one error."""
    if not images.is_dir() or not masks.is_dir():
        missing = images if not images.is_dir() else masks
        raise DataError(f"data.args.root: no folder {missing}")
    by_stem: dict[str, list[Path]] = {}
    for path in image_files(images):
        by_stem.setdefault(_stem(path, images), []).append(path)
    mask_by_stem: dict[str, list[Path]] = {}
    for path in image_files(masks):
        stem = _stem(path, masks)
        mask_by_stem.setdefault(stem.removesuffix(suffix) if suffix else stem, []).append(path)
    for kind, table in (("images", by_stem), ("masks", mask_by_stem)):
        doubles = [files for files in table.values() if len(files) > 1]
        if doubles:
            shown = "; ".join(" and ".join(str(f) for f in d) for d in doubles[:MAX_NAMED])
            raise DataError(f"{len(doubles)} file stems repeat among the {kind}: {shown}")
    lonely = sorted(set(by_stem) - set(mask_by_stem))
    orphans = sorted(set(mask_by_stem) - set(by_stem))
    if lonely or orphans:
        parts = []
        if lonely:
            parts.append(
                f"{_count(len(lonely), 'image')} without a mask in {masks}: "
                + _listed([by_stem[s][0] for s in lonely], base)
            )
        if orphans:
            parts.append(
                f"{_count(len(orphans), 'mask')} without an image in {images}: "
                + _listed([mask_by_stem[s][0] for s in orphans], base)
            )
        hint = f" (masks named <stem>{suffix}.png)" if suffix else ""
        raise DataError(
            "segmentation_folder pairs images and masks by file stem"
            + hint
            + "; "
            + "; ".join(parts)
        )
    if not by_stem:
        raise DataError(f"data.args.root: no images in {images}")
    return [(by_stem[s][0], mask_by_stem[s][0]) for s in sorted(by_stem)]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _stem(path: Path, folder: Path) -> str:
    """The path below ``folder`` without its suffix: ``sub/a`` for ``sub/a.png``."""
    return path.relative_to(folder).with_suffix("").as_posix()


def _listed(paths: list[Path], base: Path) -> str:
    shown = ", ".join(relative_key(p, base) for p in paths[:MAX_NAMED])
    return shown + (f" and {len(paths) - MAX_NAMED} more" if len(paths) > MAX_NAMED else "")


class _MaskMax(Dataset):
    def __init__(self, pairs: Pairs, mask_map: MaskMap) -> None:
        self.pairs, self.mask_map = pairs, mask_map

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> int:
        path = self.pairs[i][1]
        mask = self.mask_map(read_mask(path), path)
        labels = mask[mask != self.mask_map.ignore_index]
        return int(labels.max()) if labels.size else -1


def _largest_class(pairs: Pairs, mask_map: MaskMap, num_workers: int) -> int:
    """The largest class in any mask (one read of every mask, in the DataLoader's
    workers): the class count when neither num_classes nor mask_values says it."""
    loader = DataLoader(
        _MaskMax(pairs, mask_map), batch_size=64, num_workers=num_workers, collate_fn=list
    )
    largest = max((v for chunk in loader for v in chunk), default=-1)
    if largest < 0:
        raise DataError("the masks hold no class other than data.ignore_index")
    return largest
