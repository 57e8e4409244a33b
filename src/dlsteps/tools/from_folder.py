"""``dlsteps init DIR --task T --from-folder PATH``: a config that reads PATH as it is.

The folder is looked at the way its data source will read it (the same listing and
pairing code, so a folder this accepts is one the run accepts): an image-per-class tree
becomes ``image_folder``, images with masks ``segmentation_folder``, a saved Hugging
Face data set ``hf_dataset``. A sample of the files decides the image size, the
channels and the mask values; the config says what was found in its comments, starts
from a small built-in model, and leaves scale-up as a commented suggestion.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from dlsteps.data.decode import read_mask
from dlsteps.errors import UserError

SAMPLE = 200  # files looked at for sizes, channels and mask values
START_SIDE = 32  # larger images start at this size: a first climb in minutes on a laptop CPU
TARGET_STEPS = 300  # full-data's length to aim for
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def folder_config(path: Path, task: str) -> str:
    """The YAML text of a config for ``task`` on the data in ``path``."""
    root = path.expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"init --from-folder: no folder at {root}")
    if (root / "dataset_dict.json").exists() or (root / "state.json").exists():
        return _hf_config(root, task)
    if task == "classification":
        return _classification_config(root)
    if task == "segmentation":
        return _segmentation_config(root)
    raise UserError(
        f"init --from-folder: for --task {task}, {root} must be a Hugging Face data set saved "
        "with save_to_disk (hf_dataset reads it); image folders hold classification "
        "(ROOT/<class>/*) or segmentation (ROOT/images + ROOT/masks) data"
    )


def _look(files: Sequence[Path]) -> tuple[str, list[tuple[int, int]]]:
    """Channels (``grey`` when every sampled file is grey) and the (width, height) sizes."""
    step = max(1, len(files) // SAMPLE)
    sizes, grey = [], True
    for file in files[::step][:SAMPLE]:
        try:
            with Image.open(file) as img:
                sizes.append(img.size)
                grey = grey and img.mode in GREY_MODES
        except OSError as exc:
            raise UserError(f"init --from-folder: cannot read image {file}: {exc}") from exc
    return ("grey" if grey else "rgb"), sizes


def _side(sizes: Sequence[tuple[int, int]], multiple: int) -> int:
    smallest = min(min(s) for s in sizes)
    return max(multiple * 4, min(START_SIDE, smallest) // multiple * multiple)


def _sizes_note(sizes: Sequence[tuple[int, int]]) -> str:
    distinct = sorted(set(sizes))
    shown = ", ".join(f"{w}x{h}" for w, h in distinct[:3]) + (", ..." if len(distinct) > 3 else "")
    return f"sampled files are {shown} (width x height)"


def _epochs(train_items: int, batch_size: int) -> int:
    return max(1, min(20, math.ceil(TARGET_STEPS * batch_size / max(train_items, 1))))


def _classification_config(root: Path) -> str:
    from dlsteps.data.image_folder import image_folder

    train, val = image_folder(str(root), normalize="none")
    channels, sizes = _look(train.files + val.files)
    side = _side(sizes, 4)
    classes = ", ".join(train.class_names[:8]) + (", ..." if train.num_classes > 8 else "")
    return f"""\
# dlsteps config for the images in {root}
# (written by dlsteps init --from-folder). Climb with: dlsteps run dlsteps.yaml
# Found {train.num_classes} classes ({classes}); {len(train)} train and {len(val)} val images.
name: {root.name}
task: classification
seed: 0

data:
  name: image_folder          # ROOT/train/<class>/* + ROOT/val/<class>/* (or ROOT/<class>/*)
  args:
    root: {json.dumps(str(root))}
    size: {side}                  # {_sizes_note(sizes)}; raise it once full-data passes
    channels: {channels}
    normalize: train          # per-channel mean/std of the train images, cached in the run
  batch_size: 32
  # num_workers: 2            # decode in loader workers when full-data reports data_bound

model:
  name: small_cnn             # a small built-in CNN; in_channels/num_classes come from the data
  args: {{width: 32}}

optim: {{name: adam, lr: 1.0e-3}}

stages:
  overfit-one: {{steps: 300}}
  overfit-few: {{samples: 10, steps: 500}}
  full-data: {{epochs: {_epochs(len(train), 32)}}}
  augment: {{augmentations: [hflip], class_weights: auto}}
  # once full-data passes, a bigger model:
  # scale-up: {{model: {{name: "torchvision:resnet18", args: {{small_input: true}}}}}}
"""


def _segmentation_config(root: Path) -> str:
    from dlsteps.data.segmentation_folder import layout, paired

    train_dirs, val_dirs = layout(root)
    pairs = paired(*train_dirs, "", root)
    val_pairs = paired(*val_dirs, "", root) if val_dirs is not None else []
    channels, sizes = _look([p[0] for p in pairs + val_pairs])
    values, palette = _mask_values([p[1] for p in pairs + val_pairs])
    mapping, note = _mapping(values, palette)
    split = (
        ""
        if val_dirs is not None
        else "\n    val_fraction: 0.2         # no val folder: split by a hash of each path"
    )
    side = _side(sizes, 4)
    note_sizes, extra = _sizes_note(sizes), mapping + split
    return f"""\
# dlsteps config for the images and masks in {root}
# (written by dlsteps init --from-folder). Climb with: dlsteps run dlsteps.yaml
# Found {len(pairs)} train and {len(val_pairs)} val image/mask pairs; {note}.
name: {root.name}
task: segmentation
seed: 0

data:
  name: segmentation_folder   # images and masks paired by file stem
  args:
    root: {json.dumps(str(root))}
    size: {side}                  # {note_sizes}; masks resize nearest-neighbour{extra}
    channels: {channels}
  batch_size: 16
  # num_workers: 2            # decode in loader workers when full-data reports data_bound
  ignore_index: 255           # mask value left out of the loss and the metrics

model:
  name: tiny_unet             # a small built-in U-Net; in_channels/num_classes from the data
  args: {{width: 16}}

loss: {{name: auto}}            # cross_entropy; or dice_ce, dice, focal
optim: {{name: adam, lr: 1.0e-3}}

stages:
  overfit-one: {{steps: 300}}
  overfit-few: {{samples: 10, steps: 500}}
  full-data: {{epochs: {_epochs(len(pairs), 16)}}}
  augment: {{augmentations: [hflip], class_weights: auto}}
  # once full-data passes, a bigger model:
  # scale-up: {{model: {{name: "torchvision:lraspp_mobilenet_v3_large"}}}}
"""


def _mask_values(masks: Sequence[Path]) -> tuple[list[int], bool]:
    step = max(1, len(masks) // SAMPLE)
    values: set[int] = set()
    palette = False
    for mask in masks[::step][:SAMPLE]:
        with Image.open(mask) as img:
            palette = palette or img.mode == "P"
        values.update(int(v) for v in set(read_mask(mask).ravel().tolist()))
    return sorted(values), palette


def _mapping(values: list[int], palette: bool) -> tuple[str, str]:
    """``mask_values`` for the config (or none) and a note of what the masks hold."""
    if palette:
        return "", f"palette masks with values {values} (the indices are the classes; 255: ignored)"
    classes = [v for v in values if v != 255]
    if len(classes) > 1 and classes == list(range(len(classes))):
        return "", f"grey masks with values {values} (the values are the classes; 255: ignored)"
    mapping = ", ".join(f"{v}: {i}" for i, v in enumerate(values))
    return (
        f"\n    mask_values: {{{mapping}}}   # stored value -> class",
        f"masks with values {values}, mapped to classes 0..{len(values) - 1}",
    )


def _hf_config(root: Path, task: str) -> str:
    from dlsteps.data.hf import _datasets

    hf = _datasets()
    loaded = hf.load_from_disk(str(root))
    first = loaded[next(iter(loaded))] if isinstance(loaded, hf.DatasetDict) else loaded
    features = first.features
    image = next((n for n, f in features.items() if isinstance(f, hf.Image)), None)
    label = next((n for n in features if n != image), None)
    if image is None or label is None:
        raise UserError(
            f"init --from-folder: {root} needs an Image column and a label column; it has "
            f"{', '.join(features)}"
        )
    model = "tiny_unet" if task == "segmentation" else "small_cnn"
    return f"""\
# dlsteps config for the Hugging Face data set in {root}
# (written by dlsteps init --from-folder). Climb with: dlsteps run dlsteps.yaml
name: {root.name}
task: {task}
seed: 0

data:
  name: hf_dataset            # read with datasets.load_from_disk; never downloads
  args:
    path: {json.dumps(str(root))}
    image: {image}
    label: {label}
    size: 32
  batch_size: 32

model:
  name: {model}
  args: {{width: 16}}

stages:
  overfit-one: {{steps: 300}}
  overfit-few: {{samples: 10, steps: 500}}
  full-data: {{epochs: {_epochs(len(first), 32)}}}
"""
