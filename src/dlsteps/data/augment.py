"""The ``augment`` stage's data engineering: train-only augmentation and class weights.

Augmentations are ``torchvision.transforms.v2`` transforms named in the config (the names,
arguments and their checks are ``config.augmentations``), with their arguments::

    augmentations: [hflip, rot90, {rotate: {degrees: 20}}, {gaussian_noise: {sigma: 0.05}}]

They are applied jointly to the input (a ``tv_tensors.Image``) and, for segmentation, the
mask (a ``tv_tensors.Mask``), so every geometric change moves image and labels together;
masks are resampled with nearest neighbour and pixels rotated in from outside the image
get ``data.ignore_index`` so the loss skips them. Only the train split is ever wrapped:
the val set is what every stage's metric is measured on, and it must stay identical.
The transforms themselves are ``data.transforms``, imported only when a stage augments:
torchvision's import costs a second or more, which preflight and the plain stages skip.

Class weights (``class_weights``) come from the train label counts that ``datastats``
already computed (and cached in the run directory): ``inverse`` frequency
``N / (C * n_c)``, ``median`` frequency ``median(f) / f_c`` (``auto`` is ``median``), or
an explicit list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.utils.data import Dataset

from dlsteps.config.augmentations import Entry, normalize_entries
from dlsteps.errors import ConfigError


def resolve_entries(spec: str | Sequence[Entry], train: Dataset) -> list[Entry]:
    """``auto`` (the augment stage's default): a flip and mild noise for image inputs,
    nothing for others (vectors, sequences) where no geometric default is safe."""
    if spec != "auto":
        return list(spec)
    x, _ = train[0]
    if torch.as_tensor(x).ndim != 3:
        return []
    return normalize_entries(["hflip", "gaussian_noise"])


def augment_train(
    train: Dataset, entries: Sequence[Entry], *, mask: bool, ignore_index: int
) -> Dataset:
    """``train`` with ``entries`` applied to every read (the val set is never passed here);
    with ``mask`` the target is a per-pixel map that moves with the image."""
    if not entries:
        return train
    x, _ = train[0]
    shape = tuple(torch.as_tensor(x).shape)
    if len(shape) != 3:
        raise ConfigError(
            f"augmentations: image augmentations need (C, H, W) inputs; train item 0 is {shape}"
        )
    from dlsteps.data.transforms import Augmented, build_pipeline

    pipeline = build_pipeline(entries, shape[-2:], ignore_index)
    return Augmented(train, pipeline, mask=mask)


def describe(entries: Sequence[Entry]) -> str:
    """``hflip, rotate(degrees=20)``: the entries as a user wrote them, for stage notes."""
    parts = []
    for entry in entries:
        for name, args in entry.items():
            shown = ", ".join(f"{k}={v}" for k, v in args.items())
            parts.append(f"{name}({shown})" if shown else name)
    return ", ".join(parts)


def class_weights(
    spec: str | Sequence[float], label_counts: Mapping[int, int], num_classes: int
) -> list[float] | None:
    """Loss weights per class from the train label counts (``ignore_index`` excluded by the
    caller's ``num_classes`` range). A class absent from train gets weight 0: it never
    appears as a train target, so its weight would multiply nothing anyway."""
    if spec == "none":
        return None
    if not isinstance(spec, str):
        if len(spec) != num_classes:
            raise ConfigError(f"class_weights: {len(spec)} weights given for {num_classes} classes")
        return [float(w) for w in spec]
    counts = torch.tensor([label_counts.get(c, 0) for c in range(num_classes)], dtype=torch.float64)
    present = counts > 0
    if not present.any():
        raise ConfigError("class_weights: no train labels were counted")
    freq = counts / counts.sum()
    if spec == "inverse":
        weights = torch.where(present, 1.0 / (num_classes * freq.clamp_min(1e-12)), 0.0)
    else:  # median (auto): SegNet's median frequency balancing
        median = torch.quantile(freq[present], 0.5)  # the midpoint for an even count
        weights = torch.where(present, median / freq.clamp_min(1e-12), 0.0)
    return weights.tolist()
