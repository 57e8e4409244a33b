"""Decoding image and mask files into tensors, inside a data set's ``__getitem__``.

Images go through ``torchvision.io.decode_image`` (libjpeg-turbo / libpng, straight to a
uint8 tensor, no PIL round trip: 1.5x torchvision's PIL-based ``ImageFolder`` in
``scripts/bench_data.py``) for the formats it reads, and through PIL for the rest (BMP,
TIFF, PPM, and everything once torchvision drops its deprecated decoders); either way a
grey, palette, RGBA or CMYK file comes out with the channels asked for, so a folder of
mixed files gives one shape. Masks are read with PIL,
which keeps a palette PNG's indices (VOC style) where torchvision would expand them to
colours. Every failure names the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

try:  # deprecated in torchvision 0.29 in favour of TorchCodec; PIL reads every file too
    from torchvision.io import ImageReadMode, decode_image
except ImportError:  # pragma: no cover - a torchvision without its decoders
    decode_image = None

from dlsteps.errors import ConfigError, DataError

Channels = Literal["rgb", "grey"]
CHANNELS: dict[str, Channels] = {"rgb": "rgb", "grey": "grey", "gray": "grey", "l": "grey"}
_TORCHVISION_READS = (
    frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"}) if decode_image else frozenset()
)
_MODES = {"rgb": ImageReadMode.RGB, "grey": ImageReadMode.GRAY} if decode_image else {}
_PIL_MODES = {"rgb": "RGB", "grey": "L"}


def channels_option(value: str) -> Channels:
    """``data.args.channels`` checked: ``rgb`` or ``grey`` (``gray`` accepted)."""
    found = CHANNELS.get(str(value).lower())
    if found is None:
        raise ConfigError(f"data.args.channels: expected rgb or grey, got {value!r}")
    return found


def size_option(value: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``data.args.size``: one side (square) or ``[height, width]``; None keeps the files'."""
    if value is None:
        return None
    sides = [value, value] if isinstance(value, int) else list(value)
    if len(sides) != 2 or not all(isinstance(s, int) and s > 0 for s in sides):
        raise ConfigError(
            f"data.args.size: expected a positive int or [height, width], got {value!r}"
        )
    return sides[0], sides[1]


def read_image(path: Path, channels: Channels) -> torch.Tensor:
    """The file as a ``(C, H, W)`` uint8 (or uint16, for 16-bit PNGs) tensor, C = 3 or 1."""
    try:
        if path.suffix.lower() in _TORCHVISION_READS:
            image = decode_image(str(path), mode=_MODES[channels])
            return image[0] if image.ndim == 4 else image  # an animated GIF: its first frame
        with Image.open(path) as pil:
            array = np.asarray(pil.convert(_PIL_MODES[channels]))
    except Exception as exc:
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    return torch.from_numpy(array.copy()).reshape(*array.shape[:2], -1).permute(2, 0, 1)


def to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8/uint16 ``(C, H, W)`` → float32 in [0, 1]."""
    return F.to_dtype(image, torch.float32, scale=True)


def resize_image(image: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Bilinear with antialiasing (what torchvision's ``Resize`` does), to exactly ``size``."""
    if size is None or tuple(image.shape[-2:]) == size:
        return image
    return F.resize(image, list(size), antialias=True)


def read_mask(path: Path) -> np.ndarray:
    """A mask file's values as an ``(H, W)`` integer array: palette indices for a palette
    PNG, grey values for a grey one; an RGB mask whose channels agree counts as grey."""
    try:
        with Image.open(path) as pil:
            pil.load()
            mode = pil.mode
            array = np.asarray(pil)
    except Exception as exc:
        raise DataError(f"cannot read mask {path}: {type(exc).__name__}: {exc}") from exc
    if array.ndim == 3:
        if mode == "RGBA":
            array = array[..., :3]
        if not (array == array[..., :1]).all():
            raise DataError(
                f"mask {path} is a colour image ({mode}) with different values per channel; "
                "save masks as grey or palette PNGs whose values are the classes (a palette "
                "PNG keeps the colours for viewing)"
            )
        array = array[..., 0]
    return array.astype(np.int64)


def resize_mask(mask: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Nearest-neighbour resize of a ``(H, W)`` label mask, sampling at pixel centres (the
    same grid as the image's bilinear resize), so no class value is ever blended."""
    if size is None or tuple(mask.shape) == size:
        return mask
    h, w = mask.shape
    rows = ((torch.arange(size[0]) + 0.5) * h / size[0]).long().clamp_(max=h - 1)
    cols = ((torch.arange(size[1]) + 0.5) * w / size[1]).long().clamp_(max=w - 1)
    return mask[rows][:, cols]
