"""``dlsteps init DIR --task classification``: three stripe patterns, a small CNN."""

CONFIG = """\
# A dlsteps project. Run the whole ladder with:
#   dlsteps run dlsteps.yaml
# then open the run directory's report.html (or: tensorboard --logdir runs).
# `dlsteps stages` lists the stages and their gates; every key below is documented in
# the README's "Configuration" section. Replace the example data and model with yours,
# one stage at a time: `dlsteps run dlsteps.yaml --to overfit-one` first.
name: my-project
task: classification          # classification | segmentation | regression | multilabel
seed: 0

data:
  name: "my_data:stripes"     # module:function beside this file; returns (train, val)
  args: {num_train: 600, num_val: 150, size: 16, noise: 0.3}
  batch_size: 32
  num_workers: 0              # raise it when full-data reports data_bound

model:
  name: "my_model:small_convnet"
  args: {width: 16}           # in_channels and num_classes are filled in from the data

optim: {name: adam, lr: 3.0e-3}

metrics:
  primary: accuracy           # what the augment and scale-up gates compare
  every: 0                    # full val passes during a stage (0: only at its end)
  images_every: 0             # sample pictures in TensorBoard (0: only at the stage end)

stages:
  # 1. one train sample: the loss must reach ~0 (is the loop wired up at all?)
  overfit-one: {steps: 200}
  # 2. ten samples in one batch: now the output must depend on the input
  overfit-few: {samples: 10, steps: 300}
  # 3. all the data: val loss must improve and beat a predictor that ignores the input
  full-data: {epochs: 3}
  # 4. train-only augmentation and class weights; accuracy may drop by at most 0.02
  augment:
    epochs: 3
    augmentations: [hflip, {gaussian_noise: {sigma: 0.1}}]
    class_weights: auto
    gate: {tolerance: 0.02}
  # 5. a wider model with dropout and LR decay back on; the same tolerance
  scale-up:
    epochs: 3
    model: {args: {width: 32, dropout: 0.1}}
    optim: {scheduler: cosine}
    gate: {tolerance: 0.02}
"""

DATA = '''\
"""Your data source: a function returning ``(train_dataset, val_dataset)``.

dlsteps calls ``stripes(**data.args, seed=seed)`` (``seed`` only because the function
declares it). Each data set is a map-style ``torch.utils.data.Dataset`` whose items are
``(input, target)``; for classification the input is a float tensor ``(C, H, W)`` and the
target an integer class in ``[0, num_classes)``.

To use your own data, keep the shape of this file: read file names and labels in
``__init__``, decode one item in ``__getitem__``. Keep ``__getitem__(i)`` a pure function
of ``i`` (preflight reads items twice and compares them), never augment the val set (the
augment stage adds train-only augmentation for you), and split train and val by a stable
id so they share no sample.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

CLASS_NAMES = ("horizontal", "vertical", "spot")


class Stripes(Dataset):
    """Grey ``(1, size, size)`` images: horizontal stripes, vertical stripes or a blurred spot,
    with pixel noise. Item ``i`` is generated from ``(seed, i)`` alone."""

    # Optional attributes dlsteps reads: they fill the model's arguments of the same name
    # and name the classes in metrics (metrics/iou/<name>), pictures and the report.
    in_channels = 1
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(self, count: int, size: int, noise: float, seed: int) -> None:
        self.count, self.size, self.noise, self.seed = count, size, noise, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        label = index % self.num_classes  # balanced classes
        coords = torch.arange(self.size, dtype=torch.float32)
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (size, size) each
        frequency = 2 + 2 * torch.rand((), generator=gen)  # 2-4 stripes per image
        phase = 2 * math.pi * torch.rand((), generator=gen)
        if label == 0:
            image = torch.sin(2 * math.pi * frequency * yy / self.size + phase)
        elif label == 1:
            image = torch.sin(2 * math.pi * frequency * xx / self.size + phase)
        else:
            cy, cx = (0.25 + 0.5 * torch.rand(2, generator=gen)) * self.size
            radius = self.size * (0.15 + 0.1 * torch.rand((), generator=gen))
            image = 2 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)) - 1
        image = image + self.noise * torch.randn(image.shape, generator=gen)
        return image.unsqueeze(0), label  # (1, size, size) float, int


def stripes(
    num_train: int = 600, num_val: int = 150, size: int = 16, noise: float = 0.3, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Train and val from different seeds, so they never share an image."""
    return Stripes(num_train, size, noise, 2 * seed), Stripes(num_val, size, noise, 2 * seed + 1)
'''

MODEL = '''\
"""Your model source: a function returning an ``nn.Module`` that maps a batch of inputs
``(B, C, H, W)`` to logits ``(B, num_classes)`` (no softmax: the loss expects logits).

``in_channels`` and ``num_classes`` come from the data set's attributes unless
``model.args`` sets them; ``width`` and ``dropout`` come from ``model.args`` in
dlsteps.yaml (the scale-up stage widens the model and turns dropout on). Start small
(well under 1M parameters) and plain: no dropout, no batchnorm until full-data passes.
"""

from __future__ import annotations

from torch import nn


def small_convnet(
    in_channels: int = 1, num_classes: int = 3, width: int = 16, dropout: float = 0.0
) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3, padding=1),  # (B, width, H, W)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, width, H/2, W/2)
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),  # (B, 2*width, 1, 1)
        nn.Flatten(),  # (B, 2*width)
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(2 * width, num_classes))  # (B, num_classes) logits
    return nn.Sequential(*layers)
'''
