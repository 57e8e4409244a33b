"""``dlsteps init DIR --task multilabel``: which of three patterns an image holds."""

CONFIG = """\
# A dlsteps multi-label project: each image may hold any of three patterns. Run with:
#   dlsteps run dlsteps.yaml
# then open the run directory's report.html (or: tensorboard --logdir runs).
name: my-multilabel
task: multilabel
seed: 0

data:
  name: "my_data:patterns"    # module:function beside this file; returns (train, val)
  args: {num_train: 600, num_val: 150, size: 16, noise: 0.2}
  batch_size: 32

model:
  name: "my_model:small_convnet"
  args: {width: 16}           # in_channels and num_classes are filled in from the data

loss: {name: auto}            # auto = bce_with_logits; or focal, "my_module:fn"
optim: {name: adam, lr: 3.0e-3}

metrics:
  primary: map                # mean average precision over the labels

stages:
  overfit-one: {steps: 300}
  overfit-few: {samples: 10, steps: 500}
  full-data: {epochs: 4}
  augment:
    epochs: 4
    augmentations: [{gaussian_noise: {sigma: 0.1}}]
    gate: {tolerance: 0.02}
  scale-up:
    epochs: 4
    model: {args: {width: 24, dropout: 0.1}}
    optim: {scheduler: cosine}
    gate: {tolerance: 0.02}
"""

DATA = '''\
"""Your data source: a function returning ``(train_dataset, val_dataset)``.

Items are ``(input, target)``: a float image ``(C, H, W)`` and a 0/1 float vector
``(num_classes,)``, one entry per label (1: the label applies). Keep ``__getitem__(i)``
a pure function of ``i`` and never augment val.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

CLASS_NAMES = ("horizontal", "vertical", "spot")


class Patterns(Dataset):
    """Grey images holding each pattern with probability 1/2; item ``i`` from ``(seed, i)``."""

    in_channels = 1
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(self, count: int, size: int, noise: float, seed: int) -> None:
        self.count, self.size, self.noise, self.seed = count, size, noise, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        on = (torch.rand(3, generator=gen) < 0.5).float()  # (3,) which patterns are there
        coords = torch.arange(self.size, dtype=torch.float32)
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (size, size) each
        phase = 2 * math.pi * torch.rand(2, generator=gen)
        cy, cx = (0.3 + 0.4 * torch.rand(2, generator=gen)) * self.size
        image = (
            on[0] * torch.sin(2 * math.pi * 3 * yy / self.size + phase[0])
            + on[1] * torch.sin(2 * math.pi * 3 * xx / self.size + phase[1])
            + on[2] * 2 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8)
        )
        image = image + self.noise * torch.randn(image.shape, generator=gen)
        return image.unsqueeze(0), on  # (1, size, size) float, (3,) float in {0, 1}


def patterns(
    num_train: int = 600, num_val: int = 150, size: int = 16, noise: float = 0.2, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Train and val from different seeds, so they never share an image."""
    return Patterns(num_train, size, noise, 2 * seed), Patterns(num_val, size, noise, 2 * seed + 1)
'''

MODEL = '''\
"""Your model source: a function returning an ``nn.Module`` that maps images ``(B, C, H,
W)`` to one logit per label ``(B, num_classes)`` (no sigmoid: the loss expects logits).
Start small and plain: no dropout, no batchnorm until full-data passes.
"""

from __future__ import annotations

from torch import nn


def small_convnet(
    in_channels: int = 1, num_classes: int = 3, width: int = 16, dropout: float = 0.0
) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3, padding=1),  # (B, width, H, W)
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),  # (B, 2*width, 1, 1)
        nn.Flatten(),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(2 * width, num_classes))  # (B, num_classes) logits
    return nn.Sequential(*layers)
'''
