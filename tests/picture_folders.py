"""Small image data sets written to disk with PIL, in the layouts users keep them in.

Each picture has something a tiny model can learn in seconds (a bright disc, horizontal
or vertical stripes), drawn from a seeded generator with noise, so two files are never
identical (preflight would call that a split overlap).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("disc", "horizontal", "vertical")


def pattern(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) float picture in [0, 1] of ``kind``, with noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "disc":
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        base = ((yy - cy) ** 2 + (xx - cx) ** 2 < (0.25 * size) ** 2).astype(np.float32)
    else:
        coord = yy if kind == "horizontal" else xx
        period = rng.uniform(3, 5)
        base = (np.sin(2 * np.pi * coord / period + rng.uniform(0, 6.3)) > 0).astype(np.float32)
    return np.clip(0.15 + 0.7 * base + rng.normal(0, 0.08, base.shape), 0, 1)


def to_pil(picture: np.ndarray, mode: str, rng: np.random.Generator) -> Image.Image:
    grey = (picture * 255).astype(np.uint8)
    if mode == "L":
        return Image.fromarray(grey, "L")
    tint = rng.uniform(0.6, 1.0, 3)  # a random colour per file
    rgb = (picture[..., None] * tint * 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def write_image_folder(
    root: Path,
    per_class: int = 24,
    val_per_class: int | None = 8,
    classes: Sequence[str] = CLASSES,
    missing_in_val: Sequence[str] = (),
    size: int = 16,
    modes: Sequence[str] = ("RGB",),
    seed: int = 0,
    suffix: str = ".png",
) -> Path:
    """``root/train/<class>/*`` and ``root/val/<class>/*``; ``val_per_class=None`` writes
    ``root/<class>/*`` alone (a split by val_fraction). ``modes`` cycle per file (mixed
    grey and RGB files); ``missing_in_val`` classes get no val folder at all."""
    rng = np.random.default_rng(seed)
    splits = {"train": per_class} if val_per_class is not None else {"": per_class}
    if val_per_class is not None:
        splits["val"] = val_per_class
    n = 0
    for split, count in splits.items():
        for kind in classes:
            if split == "val" and kind in missing_in_val:
                continue
            folder = root / split / kind if split else root / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                mode = modes[n % len(modes)]
                n += 1
                to_pil(pattern(kind, size, rng), mode, rng).save(folder / f"{kind}_{i:03d}{suffix}")
    return root


def _scene(size: int, rng: np.random.Generator, grid: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A picture with a bright rectangle on a noisy background, and its 0/1 mask; with
    ``grid`` the rectangle's edges lie on multiples of it (what a model whose logits have
    output stride ``grid`` can fit exactly)."""
    mask = np.zeros((size, size), dtype=np.uint8)
    cells = size // grid
    h, w = rng.integers(max(1, cells // 4), max(2, cells // 2), 2) * grid
    top = rng.integers(0, (size - h) // grid + 1) * grid
    left = rng.integers(0, (size - w) // grid + 1) * grid
    mask[top : top + h, left : left + w] = 1
    picture = np.clip(0.2 + 0.6 * mask + rng.normal(0, 0.08, mask.shape), 0, 1)
    return picture, mask


def write_segmentation_folder(
    root: Path,
    train: int = 32,
    val: int = 12,
    size: int = 16,
    palette: bool = False,
    layout: str = "split/kind",
    seed: int = 0,
    grid: int = 1,
) -> Path:
    """Images and masks paired by stem. Masks store the foreground as 255 (grey PNG), or
    with ``palette`` as index 1 of a VOC-style palette PNG. ``layout``: ``split/kind``
    (root/train/images), ``kind/split`` (root/images/train) or ``flat`` (root/images)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        if layout == "flat" and split == "val":
            break
        folders = {
            "split/kind": (root / split / "images", root / split / "masks"),
            "kind/split": (root / "images" / split, root / "masks" / split),
            "flat": (root / "images", root / "masks"),
        }[layout]
        total = count + (val if layout == "flat" else 0)
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        for i in range(total):
            picture, mask = _scene(size, rng, grid)
            to_pil(picture, "RGB", rng).save(folders[0] / f"{split}_{i:03d}.jpg", quality=95)
            if palette:
                img = Image.fromarray(mask, "P")
                img.putpalette([0, 0, 0, 128, 0, 0] + [224, 224, 192] * 254)
                img.save(folders[1] / f"{split}_{i:03d}.png")
            else:
                Image.fromarray(mask * 255, "L").save(folders[1] / f"{split}_{i:03d}.png")
    return root
