"""The torchvision transforms behind ``augmentations`` (the names, their arguments and the
builders), and the train-set wrapper that applies them to image and mask together.

Separate from ``data.augment`` so that torchvision is imported only by a stage that
augments (see there for what the augmentations mean).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

from dlsteps.config.augmentations import Entry


class InRange(v2.Transform):
    """Run a transform written for ``[0, 1]`` images (``ColorJitter`` clamps to it) on
    images normalised to ``value_range``: map to ``[0, 1]``, transform, map back."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, inner: v2.Transform, value_range: Sequence[float]) -> None:
        super().__init__()
        lo, hi = float(value_range[0]), float(value_range[1])
        if not hi > lo:
            raise ValueError(f"value_range must be [low, high] with high > low, got {value_range}")
        self.inner, self.lo, self.hi = inner, lo, hi

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        unit = (inpt.as_subclass(torch.Tensor) - self.lo) / (self.hi - self.lo)
        out = self.inner(tv_tensors.Image(unit)).as_subclass(torch.Tensor)
        return tv_tensors.wrap(out * (self.hi - self.lo) + self.lo, like=inpt)


def hflip(p: float = 0.5) -> v2.Transform:
    """Mirror left-right with probability ``p``."""
    return v2.RandomHorizontalFlip(p)


def vflip(p: float = 0.5) -> v2.Transform:
    """Mirror top-bottom with probability ``p``."""
    return v2.RandomVerticalFlip(p)


def rot90(*, fill: dict) -> v2.Transform:
    """Rotate by 0, 90, 180 or 270 degrees, chosen uniformly. Nearest-neighbour sampling
    makes a quarter turn an exact pixel permutation for square inputs; non-square inputs
    keep their shape, and the corners rotated in get ``fill``."""
    return v2.RandomChoice(
        [
            v2.RandomRotation((a, a), interpolation=InterpolationMode.NEAREST, fill=fill)
            for a in (0.0, 90.0, 180.0, 270.0)
        ]
    )


def rotate(degrees: float | Sequence[float] = 15.0, *, fill: dict) -> v2.Transform:
    """Rotate by an angle drawn from ``[-degrees, degrees]`` (or ``[low, high]`` when a
    pair); bilinear for the image, nearest for the mask."""
    if isinstance(degrees, int | float) and degrees < 0:
        raise ValueError(f"degrees must be >= 0, got {degrees}")
    return v2.RandomRotation(degrees, interpolation=InterpolationMode.BILINEAR, fill=fill)


def scale_crop(
    scale: Sequence[float] = (0.5, 1.0),
    ratio: Sequence[float] = (0.75, 4 / 3),
    *,
    size: Sequence[int],
) -> v2.Transform:
    """Crop a random area fraction in ``scale`` with aspect ``ratio`` and resize it back to
    the input's own size (torchvision's ``RandomResizedCrop``): a random zoom."""
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must be [low, high] with 0 < low <= high <= 1, got {scale}")
    return v2.RandomResizedCrop(list(size), scale=tuple(scale), ratio=tuple(ratio))


def color_jitter(
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.0,
    value_range: Sequence[float] = (0.0, 1.0),
) -> v2.Transform:
    """Random brightness/contrast/saturation/hue (images only). ``value_range`` is the range
    of the inputs: ``[-1, 1]`` for the built-in data sets, which are normalised to it."""
    return InRange(v2.ColorJitter(brightness, contrast, saturation, hue), value_range)


def gaussian_noise(sigma: float = 0.1, mean: float = 0.0) -> v2.Transform:
    """Add N(mean, sigma²) noise to the image (never to a mask); no clipping, so it suits
    normalised inputs."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return v2.GaussianNoise(mean=mean, sigma=sigma, clip=False)


# The builders of the names ``config.augmentations`` accepts (a test checks both agree).
BUILDERS: dict[str, Callable[..., v2.Transform]] = {
    "hflip": hflip,
    "vflip": vflip,
    "rot90": rot90,
    "rotate": rotate,
    "scale_crop": scale_crop,
    "color_jitter": color_jitter,
    "gaussian_noise": gaussian_noise,
}
# Arguments dlsteps supplies from the data, never from the config (refused there as unknown).
CONTEXT = ("fill", "size")


def _build(name: str, args: Mapping[str, Any], size: Sequence[int], ignore_index: int) -> Any:
    fn = BUILDERS[name]
    params = inspect.signature(fn).parameters
    context = {
        "fill": {tv_tensors.Image: 0.0, tv_tensors.Mask: ignore_index},
        "size": list(size),
    }
    return fn(**args, **{k: v for k, v in context.items() if k in params})


def build_pipeline(entries: Sequence[Entry], size: Sequence[int], ignore_index: int) -> v2.Compose:
    """The transforms of ``entries``, in order; ``size`` is the input's ``(H, W)``."""
    return v2.Compose(
        [_build(name, args, size, ignore_index) for e in entries for name, args in e.items()]
    )


class Augmented(Dataset):
    """A train set whose items pass through ``pipeline``; the image and, when ``mask`` is
    true, the target are transformed together. Items come out as plain tensors."""

    def __init__(self, base: Dataset, pipeline: v2.Compose, mask: bool) -> None:
        self.base, self.pipeline, self.mask = base, pipeline, mask
        for attr in ("num_classes", "in_channels"):  # what build_model reads off the data
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        x, y = self.base[index]
        image = tv_tensors.Image(torch.as_tensor(x))  # (C, H, W)
        if self.mask:
            image, target = self.pipeline(image, tv_tensors.Mask(torch.as_tensor(y)))  # (H, W)
            return image.as_subclass(torch.Tensor), target.as_subclass(torch.Tensor)
        return self.pipeline(image).as_subclass(torch.Tensor), y
