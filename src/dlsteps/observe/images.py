"""Pictures of predictions: input / target / prediction side by side, as an RGB array.

Pure functions of tensors, each a layout a task picks (``Task.picture``); the observer
sends the result to TensorBoard and to ``<stage>/samples.png`` for the report:

- ``segmentation_picture``: one row per sample: the input, then the target mask and the predicted
  mask as colour overlays on the input in grey (ignored pixels are left uncoloured);
- ``classification_picture``: a labelled grid, one tile per sample with ``target -> prediction``
  under it, framed green when right and red when wrong (``multilabel_picture``: the same
  with the labels that are on);
- ``image_to_image_picture`` (image-shaped targets): input, target, prediction per row
  (target and prediction on the target's value scale, so a washed-out prediction looks
  washed out).

Inputs that are not images (vectors, sequences) and scalar regression give no picture.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# Class colours (RGB in [0, 1]): background dark, then distinct hues, repeated if needed.
PALETTE = np.array(
    [
        [0.15, 0.15, 0.15],
        [0.90, 0.25, 0.20],
        [0.20, 0.75, 0.30],
        [0.25, 0.40, 0.95],
        [0.95, 0.80, 0.15],
        [0.75, 0.30, 0.85],
        [0.15, 0.80, 0.85],
        [0.95, 0.55, 0.15],
        [0.55, 0.35, 0.20],
        [0.95, 0.60, 0.75],
    ],
    dtype=np.float32,
)
MIN_SIDE = 64  # small images are upscaled (nearest neighbour) to at least this many pixels
OVERLAY_ALPHA = 0.65
GAP = 2  # pixels of white between tiles
LINE = 12  # caption line height in pixels


def is_image_batch(x: torch.Tensor) -> bool:
    """(B, C, H, W) with a small channel count: something a person can look at."""
    return x.dim() == 4 and x.shape[1] <= 4 and min(x.shape[2:]) >= 2


def on_cpu(
    x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
    """Inputs, targets and outputs detached on the CPU (inputs and outputs as float), or
    None when the inputs are not images."""
    x = x.detach().float().cpu()
    if not is_image_batch(x):
        return None
    return x, y.detach().cpu(), out.detach().float().cpu() if out is not None else None


def png_bytes(picture: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def segmentation_picture(
    x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor | None, ignore_index: int | None
) -> np.ndarray:
    """Input | target | prediction per row (no prediction column when ``pred`` is None:
    the batch as it enters the model)."""
    rows = []
    for i in range(len(x)):
        base = _to_rgb(x[i])  # (H, W, 3) in [0, 1]
        grey = base.mean(axis=2, keepdims=True).repeat(3, axis=2)  # colours only from classes
        row = [base, _overlay(grey, y[i].numpy(), ignore_index)]
        if pred is not None:
            row.append(_overlay(grey, pred[i].numpy(), None))
        rows.append(row)
    return _grid(rows)


def classification_picture(
    x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor | None, class_names: list[str] | None
) -> np.ndarray:
    """A grid of tiles captioned ``target -> prediction``, framed green when right, red
    when wrong; with ``pred`` None, captioned with the label alone in a grey frame."""
    names = class_names or []
    label = lambda c: names[c] if 0 <= c < len(names) else str(c)  # noqa: E731
    tiles = []
    for i in range(len(x)):
        t = int(y[i])
        tile = _upscale(_to_rgb(x[i]))
        if pred is None:
            tiles.append(_label_tile(tile, (label(t), ""), right=None))
        else:
            p = int(pred[i])
            tiles.append(_label_tile(tile, (label(t), f"-> {label(p)}"), right=t == p))
    return _tile_grid(tiles)


def multilabel_picture(
    x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor | None, class_names: list[str] | None
) -> np.ndarray:
    """Like ``classification_picture``, with the labels that are on (``a+b``, ``-`` for
    none); framed green when every label is right (grey, targets only, without ``pred``)."""
    names = class_names or []

    def listed(row: torch.Tensor) -> str:
        on = torch.nonzero(row).flatten().tolist()
        return "+".join(names[c] if c < len(names) else str(c) for c in on) or "-"

    tiles = []
    for i in range(len(x)):
        tile = _upscale(_to_rgb(x[i]))
        if pred is None:
            tiles.append(_label_tile(tile, (listed(y[i]), ""), right=None))
            continue
        right = bool(torch.equal(y[i].bool(), pred[i].bool()))
        tiles.append(_label_tile(tile, (listed(y[i]), f"-> {listed(pred[i])}"), right=right))
    return _tile_grid(tiles)


def _tile_grid(tiles: list[np.ndarray], per_row: int = 8) -> np.ndarray:
    rows = [tiles[i : i + per_row] for i in range(0, len(tiles), per_row)]
    blank = np.ones_like(tiles[0])
    rows[-1] += [blank] * (len(rows[0]) - len(rows[-1]))
    return _grid(rows, upscale=False)


def image_to_image_picture(
    x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None
) -> np.ndarray:
    lo, hi = float(y.min()), float(y.max())
    rows = []
    for i in range(len(x)):
        row = [_to_rgb(x[i]), _to_rgb(y[i], lo, hi)]
        if out is not None:
            row.append(_to_rgb(out[i], lo, hi))
        rows.append(row)
    return _grid(rows)


def _to_rgb(img: torch.Tensor, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """(C, H, W) → (H, W, 3) in [0, 1]: three channels as RGB, else the first as grey,
    scaled from [lo, hi] (default: the image's own range)."""
    img = img[:3] if img.shape[0] >= 3 else img[:1].expand(3, -1, -1)
    lo = float(img.min()) if lo is None else lo
    hi = float(img.max()) if hi is None else hi
    scaled = ((img - lo) / max(hi - lo, 1e-8)).clamp(0, 1)
    return scaled.permute(1, 2, 0).numpy()


def _overlay(base: np.ndarray, mask: np.ndarray, ignore_index: int | None) -> np.ndarray:
    colours = PALETTE[np.mod(mask, len(PALETTE))]  # (H, W, 3)
    alpha = np.full((*mask.shape, 1), OVERLAY_ALPHA, dtype=np.float32)
    if ignore_index is not None:
        alpha[mask == ignore_index] = 0.0
    return base * (1 - alpha) + colours * alpha


def _upscale(img: np.ndarray) -> np.ndarray:
    factor = max(1, -(-MIN_SIDE // min(img.shape[:2])))
    return img.repeat(factor, axis=0).repeat(factor, axis=1)


def _label_tile(tile: np.ndarray, lines: tuple[str, str], right: bool | None) -> np.ndarray:
    """The tile with a frame (green right, red wrong, grey neither) and two caption lines
    (target, prediction) under it."""
    h, w = tile.shape[:2]
    colour = [0.6, 0.6, 0.6] if right is None else [0.2, 0.7, 0.3] if right else [0.9, 0.2, 0.2]
    frame = np.array(colour, dtype=np.float32)
    canvas = np.ones((h + 4 + 2 * LINE, w + 4, 3), dtype=np.float32)
    canvas[: h + 4] = frame
    canvas[2 : h + 2, 2 : w + 2] = tile
    image = Image.fromarray((canvas * 255).astype(np.uint8))
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=LINE - 2)
    for i, text in enumerate(lines):
        while len(text) > 1 and draw.textlength(text, font=font) > w:
            text = text[:-1]  # cut long class names to the tile's width
        draw.text((3, h + 4 + i * LINE), text, fill=(0, 0, 0), font=font)
    return np.asarray(image, dtype=np.float32) / 255.0


def _grid(rows: list[list[np.ndarray]], upscale: bool = True) -> np.ndarray:
    """Tiles (each (h, w, 3) in [0, 1], equal sizes) → one (H, W, 3) uint8 picture."""
    tiles = [[_upscale(t) if upscale else t for t in row] for row in rows]
    h, w = tiles[0][0].shape[:2]
    n_rows, n_cols = len(tiles), max(len(r) for r in tiles)
    canvas = np.ones((n_rows * (h + GAP) + GAP, n_cols * (w + GAP) + GAP, 3), dtype=np.float32)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            top, left = GAP + r * (h + GAP), GAP + c * (w + GAP)
            canvas[top : top + h, left : left + w] = tile
    return (canvas * 255).round().astype(np.uint8)
