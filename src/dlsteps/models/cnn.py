"""``small_cnn``: a plain convolutional classifier for small images such as 8×8 digits."""

from __future__ import annotations

from torch import nn


def small_cnn(in_channels: int = 1, num_classes: int = 10, width: int = 32) -> nn.Sequential:
    """Two conv stages, global average pooling, a linear head; no batchnorm, no dropout."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),  # (B, num_classes) logits
    )
