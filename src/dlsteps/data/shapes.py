"""``shapes``: synthetic segmentation of filled shapes on textured noise.

Class 0 is background; class k ≥ 1 is drawn as shape kind (k-1) mod 3 (circle, rectangle,
triangle) in a colour of its own, so both form and colour carry the label. Train and val
come from disjoint random streams of one seed, so they never share a sample; everything
is generated at construction in a few milliseconds with numpy.
"""

from __future__ import annotations

import numpy as np
import torch

from dlsteps.data.tensors import TensorPairs

_PALETTE = np.array(
    [
        [0.90, 0.25, 0.20],
        [0.20, 0.80, 0.30],
        [0.25, 0.35, 0.95],
        [0.95, 0.85, 0.20],
        [0.80, 0.30, 0.85],
        [0.20, 0.85, 0.85],
        [0.95, 0.55, 0.15],
    ],
    dtype=np.float32,
)


def shapes(
    num_train: int = 256,
    num_val: int = 64,
    size: int = 32,
    num_classes: int = 4,
    max_shapes: int = 3,
    noise: float = 0.15,
    texture: float = 0.3,
    seed: int = 0,
) -> tuple[TensorPairs, TensorPairs]:
    """Return ``(train, val)``: inputs ``(3, size, size)`` floats, masks ``(size, size)`` int64."""
    if not 2 <= num_classes <= len(_PALETTE) + 1:
        raise ValueError(f"num_classes must be in [2, {len(_PALETTE) + 1}], got {num_classes}")
    if size < 8 or max_shapes < 1 or num_train < 1 or num_val < 1:
        raise ValueError("size >= 8, max_shapes >= 1, num_train >= 1 and num_val >= 1 required")
    rng = np.random.default_rng(seed)
    train_rng, val_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, size=2))
    make = lambda n, r: _generate(n, size, num_classes, max_shapes, noise, texture, r)  # noqa: E731
    return make(num_train, train_rng), make(num_val, val_rng)


def _generate(
    n: int,
    size: int,
    num_classes: int,
    max_shapes: int,
    noise: float,
    texture: float,
    rng: np.random.Generator,
) -> TensorPairs:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = _texture(n, size, texture, rng)
    masks = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        for _ in range(rng.integers(1, max_shapes + 1)):
            cls = int(rng.integers(1, num_classes))
            region = _shape_region((cls - 1) % 3, xx, yy, size, rng)
            colour = _PALETTE[cls - 1] + rng.normal(0, 0.05, 3).astype(np.float32)
            images[i][:, region] = colour[:, None]
            masks[i][region] = cls
    images += rng.normal(0, noise, images.shape).astype(np.float32)
    inputs = torch.from_numpy((images - 0.5) / 0.5)
    return TensorPairs(inputs, torch.from_numpy(masks), num_classes)


def _texture(n: int, size: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency grey clouds: a coarse random grid upsampled to full size."""
    coarse = rng.random((n, 1, 4, 4)).astype(np.float32)
    up = torch.nn.functional.interpolate(
        torch.from_numpy(coarse), size=(size, size), mode="bilinear", align_corners=False
    ).numpy()
    return np.repeat(0.35 + strength * (up - 0.5), 3, axis=1).astype(np.float32)


def _shape_region(
    kind: int, xx: np.ndarray, yy: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    r = rng.uniform(0.12, 0.25) * size
    cx, cy = rng.uniform(r, size - r, 2)
    if kind == 0:
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if kind == 1:
        w, h = r * rng.uniform(0.6, 1.0, 2)
        return (np.abs(xx - cx) <= w) & (np.abs(yy - cy) <= h)
    # upright triangle: its half-width grows linearly from the apex down to the base
    top = cy - r
    half = (yy - top) / 2.0
    return (yy >= top) & (yy <= cy + r) & (np.abs(xx - cx) <= half)
