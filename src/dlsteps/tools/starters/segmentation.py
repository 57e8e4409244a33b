"""``dlsteps init DIR --task segmentation``: squares and discs on noise, a small U-Net."""

CONFIG = """\
# A dlsteps segmentation project. Run the whole ladder with:
#   dlsteps run dlsteps.yaml
# then open the run directory's report.html (or: tensorboard --logdir runs).
# Your images and masks already in folders? `dlsteps init DIR --task segmentation
# --from-folder PATH` writes a config that reads them as they are (README: segmentation_folder).
name: my-segmentation
task: segmentation
seed: 0

data:
  name: "my_data:blocks"      # module:function beside this file; returns (train, val)
  args: {num_train: 400, num_val: 100, size: 24, noise: 0.2}
  batch_size: 16
  ignore_index: 255           # mask value left out of the loss and the metrics

model:
  name: "my_model:small_unet"
  args: {width: 16}           # in_channels and num_classes are filled in from the data

loss: {name: auto}            # auto = cross_entropy; or dice_ce, dice, focal, "my_module:fn"
optim: {name: adam, lr: 3.0e-3}

metrics:
  primary: miou               # what the augment and scale-up gates compare

stages:
  overfit-one: {steps: 300}
  overfit-few: {samples: 10, steps: 500}
  full-data: {epochs: 12}     # long enough to converge: the later gates compare with it
  augment:
    epochs: 12
    augmentations: [hflip, vflip]   # geometry moves the mask with the image
    class_weights: none
    gate: {tolerance: 0.03}
  # 5. LR decay back on, trained as long as full-data and augment together (augment
  #    continued from full-data); a wider model is model: {args: {width: 32}}
  scale-up:
    epochs: 24
    optim: {scheduler: cosine}
    gate: {tolerance: 0.03}
"""

DATA = '''\
"""Your data source: a function returning ``(train_dataset, val_dataset)``.

Items are ``(image, mask)``: a float image ``(C, H, W)`` and an integer mask ``(H, W)``
whose values are classes in ``[0, num_classes)`` (or ``data.ignore_index``). Images and
masks in folders need no code: ``data: {name: segmentation_folder, args: {root: DIR}}``.
Keep ``__getitem__(i)`` a pure function of ``i`` and never augment val.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

CLASS_NAMES = ("background", "square", "disc")


class Blocks(Dataset):
    """Grey images with one or two squares and discs; item ``i`` from ``(seed, i)`` alone."""

    in_channels = 1
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(self, count: int, size: int, noise: float, seed: int) -> None:
        self.count, self.size, self.noise, self.seed = count, size, noise, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        coords = torch.arange(self.size, dtype=torch.float32)
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (size, size) each
        mask = torch.zeros(self.size, self.size, dtype=torch.int64)
        for _ in range(1 + int(torch.randint(2, (), generator=gen))):
            kind = 1 + int(torch.randint(2, (), generator=gen))  # 1 square, 2 disc
            r = self.size * (0.12 + 0.1 * float(torch.rand((), generator=gen)))
            cy, cx = (r + (self.size - 2 * r) * torch.rand(2, generator=gen)).tolist()
            if kind == 1:
                inside = ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)
            else:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            mask[inside] = kind
        image = (mask > 0).float() * 2 - 1 + self.noise * torch.randn(mask.shape, generator=gen)
        return image.unsqueeze(0), mask  # (1, size, size) float, (size, size) int64


def blocks(
    num_train: int = 400, num_val: int = 100, size: int = 24, noise: float = 0.2, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Train and val from different seeds, so they never share an image."""
    return Blocks(num_train, size, noise, 2 * seed), Blocks(num_val, size, noise, 2 * seed + 1)
'''

MODEL = '''\
"""Your model source: a function returning an ``nn.Module`` that maps images ``(B, C, H,
W)`` to logits ``(B, num_classes, H, W)`` (no softmax: the loss expects logits).

Any torchvision or timm model works by name too: ``model: {name:
"torchvision:lraspp_mobilenet_v3_large"}`` (its ``{"out": ...}`` output is picked for
you). Start small and plain: no dropout, no batchnorm until full-data passes.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(),
    )


class SmallUNet(nn.Module):
    """One down and one up step with a skip connection; H and W must be even."""

    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        self.enc = _block(in_channels, width)  # (B, w, H, W)
        self.mid = _block(width, 2 * width)  # (B, 2w, H/2, W/2)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)  # (B, w, H, W)
        self.dec = _block(2 * width, width)
        self.head = nn.Conv2d(width, num_classes, 1)  # (B, num_classes, H, W) logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc(x)
        deep = self.mid(nn.functional.max_pool2d(skip, 2))
        return self.head(self.dec(torch.cat([self.up(deep), skip], dim=1)))


def small_unet(in_channels: int = 1, num_classes: int = 3, width: int = 16) -> nn.Module:
    return SmallUNet(in_channels, num_classes, width)
'''
