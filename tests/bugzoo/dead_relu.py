"""Bug: a bias initialised at -20 before a ReLU (a copy-paste of an init for another
activation): the layer's units are dead for every input from the start."""

from __future__ import annotations

import torch
from torch import nn


def model():
    hidden = nn.Linear(16, 64)
    with torch.no_grad():
        hidden.bias.fill_(-20.0)  # the bug
    return nn.Sequential(hidden, nn.ReLU(), nn.Linear(64, 4))
