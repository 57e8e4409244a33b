"""``shapes_pix2pix``: conditional image generation built on the ``shapes`` generator.

The target is the clean colour image of ``shapes`` (no pixel noise), in [-1, 1]; the
input is derived from the same picture, so a generator can learn the mapping:

- ``grey``: the luminance (colourisation; the easiest, the default),
- ``edges``: the outlines of the shapes (the colour must come from the form),
- ``masked``: the colour image with a square hole to fill in (inpainting).

Inputs are standardised per channel with the train set's mean and std (the grey of the
palette spans a narrow band; unscaled, a small U-Net barely resolves it).

Difficulty knobs: ``max_shapes`` (how crowded a picture is), ``texture`` (how much the
background varies) and ``num_kinds`` (shape/colour kinds). Start with the simplest
distribution and raise them once the ladder passes: a GAN's troubles are mostly data
troubles.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from dlsteps.data.shapes import shapes
from dlsteps.data.tensors import TensorPairs

InputKind = Literal["grey", "edges", "masked"]
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def shapes_pix2pix(
    num_train: int = 256,
    num_val: int = 64,
    size: int = 32,
    input_kind: InputKind = "grey",
    max_shapes: int = 2,
    texture: float = 0.0,
    num_kinds: int = 3,
    seed: int = 0,
) -> tuple[TensorPairs, TensorPairs]:
    """Return ``(train, val)``: inputs ``(C_in, size, size)``, targets ``(3, size, size)``.

    ``C_in`` is 1 for ``grey``/``edges`` and 4 for ``masked`` (image + hole mask).
    ``num_kinds`` (1–7) is how many shape/colour kinds appear.
    """
    if input_kind not in ("grey", "edges", "masked"):
        raise ValueError(f"input_kind must be 'grey', 'edges' or 'masked', got {input_kind!r}")
    if not 1 <= num_kinds <= 7:
        raise ValueError(f"num_kinds must be in [1, 7], got {num_kinds}")
    train, val = shapes(
        num_train=num_train,
        num_val=num_val,
        size=size,
        num_classes=num_kinds + 1,
        max_shapes=max_shapes,
        noise=0.0,
        texture=texture,
        seed=seed,
    )
    rng = np.random.default_rng(seed + 1)
    train_x = _inputs(train.inputs, train.targets, input_kind, rng)
    val_x = _inputs(val.inputs, val.targets, input_kind, rng)
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C_in, 1, 1)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (
        TensorPairs(((train_x - mean) / std).contiguous(), train.inputs, num_classes=None),
        TensorPairs(((val_x - mean) / std).contiguous(), val.inputs, num_classes=None),
    )


def _inputs(
    images: torch.Tensor, masks: torch.Tensor, kind: InputKind, rng: np.random.Generator
) -> torch.Tensor:
    """images: (N, 3, H, W) in [-1, 1]; masks: (N, H, W) shape labels, 0 = background."""
    if kind == "grey":
        return (images * _LUMA).sum(dim=1, keepdim=True)  # (N, 1, H, W)
    if kind == "edges":
        return _edges(masks)  # (N, 1, H, W): 1 on outlines
    holes = _holes(images.shape[0], images.shape[-1], rng)  # (N, 1, H, W), 1 = hidden
    return torch.cat([images * (1 - holes), holes], dim=1)  # (N, 4, H, W)


def _edges(masks: torch.Tensor) -> torch.Tensor:
    """1 where a pixel's label differs from its right or lower neighbour: (N, 1, H, W)."""
    edge = torch.zeros(masks.shape, dtype=torch.bool)
    edge[:, :, :-1] |= masks[:, :, 1:] != masks[:, :, :-1]
    edge[:, :-1, :] |= masks[:, 1:, :] != masks[:, :-1, :]
    return edge.unsqueeze(1).float()


def _holes(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """One square hole of a quarter of the side per image, at a seeded random place."""
    side = max(2, size // 4)
    holes = torch.zeros(n, 1, size, size)
    for i, (top, left) in enumerate(rng.integers(0, size - side + 1, size=(n, 2))):
        holes[i, :, top : top + side, left : left + side] = 1.0
    return holes
