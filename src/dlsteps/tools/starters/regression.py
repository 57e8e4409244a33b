"""``dlsteps init DIR --task regression``: the size of a blurred spot, a small CNN."""

CONFIG = """\
# A dlsteps regression project. Run the whole ladder with:
#   dlsteps run dlsteps.yaml
# then open the run directory's report.html (or: tensorboard --logdir runs).
name: my-regression
task: regression
seed: 0

data:
  name: "my_data:spots"       # module:function beside this file; returns (train, val)
  args: {num_train: 600, num_val: 150, size: 16, noise: 0.2}
  batch_size: 32

model:
  name: "my_model:spot_size"
  args: {width: 16}           # in_channels is filled in from the data

loss: {name: auto}            # auto = mse; or l1, huber, "my_module:fn"
optim: {name: adam, lr: 3.0e-3}

metrics:
  primary: rmse               # lower is better; the gates know

stages:
  overfit-one: {steps: 300}
  overfit-few: {samples: 10, steps: 500}
  full-data: {epochs: 4}
  augment:
    epochs: 4
    augmentations: [hflip, vflip]   # a spot's size does not change when flipped
    gate: {tolerance: 0.05}         # in the metric's units (rmse of standardised targets)
  scale-up:
    epochs: 4
    model: {args: {width: 24}}
    optim: {scheduler: cosine}
    gate: {tolerance: 0.05}
"""

DATA = '''\
"""Your data source: a function returning ``(train_dataset, val_dataset)``.

Items are ``(input, target)``: here a grey image ``(1, H, W)`` and a float target ``(1,)``,
the spot's radius, standardised (about zero mean, unit variance: regression trains best
on targets of that scale). The model's prediction must have the target's shape.
Keep ``__getitem__(i)`` a pure function of ``i`` and never augment val.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

RADIUS = (1.5, 5.0)  # pixels; the target is the radius mapped to [-1, 1]


class Spots(Dataset):
    """A blurred spot of random size and place; item ``i`` from ``(seed, i)`` alone."""

    in_channels = 1

    def __init__(self, count: int, size: int, noise: float, seed: int) -> None:
        self.count, self.size, self.noise, self.seed = count, size, noise, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        coords = torch.arange(self.size, dtype=torch.float32)
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (size, size) each
        unit = torch.rand((), generator=gen)
        radius = RADIUS[0] + (RADIUS[1] - RADIUS[0]) * unit
        cy, cx = (0.3 + 0.4 * torch.rand(2, generator=gen)) * self.size
        spot = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        image = 2 * spot - 1 + self.noise * torch.randn(spot.shape, generator=gen)
        return image.unsqueeze(0), (2 * unit - 1).reshape(1)  # (1, H, W), (1,)


def spots(
    num_train: int = 600, num_val: int = 150, size: int = 16, noise: float = 0.2, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Train and val from different seeds, so they never share an image."""
    return Spots(num_train, size, noise, 2 * seed), Spots(num_val, size, noise, 2 * seed + 1)
'''

MODEL = '''\
"""Your model source: a function returning an ``nn.Module`` whose output has the target's
shape, here ``(B, 1)``. No activation on the output: a regression head is linear.
Start small and plain: no dropout, no batchnorm until full-data passes.
"""

from __future__ import annotations

from torch import nn


def spot_size(in_channels: int = 1, width: int = 16, dropout: float = 0.0) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3, padding=1),  # (B, width, H, W)
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),  # (B, width, 1, 1): how much of the image is spot
        nn.Flatten(),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, 1))  # (B, 1)
    return nn.Sequential(*layers)
'''
