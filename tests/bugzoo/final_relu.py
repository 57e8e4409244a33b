"""Bug: a regression model ends in ReLU (copied from a classifier's hidden block), so it
cannot predict the negative targets."""

from __future__ import annotations

from torch import nn
from zoo_common import mlp


def model():
    return nn.Sequential(mlp(in_features=8, num_classes=1), nn.ReLU())  # the bug
