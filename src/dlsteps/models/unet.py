"""``tiny_unet``: a small U-Net for segmentation, the starting model of ``configs/seg.yaml``.

Plain conv + ReLU blocks with no batchnorm and no dropout (the method's "no fancy
features" start); ``batchnorm``/``dropout`` exist for the ``scale-up`` stage.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, batchnorm: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in in (cin, cout):
        layers.append(nn.Conv2d(c_in, cout, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Encoder-decoder with skip connections; input H and W must be divisible by 2**depth."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 4,
        width: int = 16,
        depth: int = 2,
        batchnorm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_block(cin, w, batchnorm, dropout))
            cin = w
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(cin, w, 2, stride=2))
            self.merge.append(_block(2 * w, w, batchnorm, dropout))
            cin = w
        self.head = nn.Conv2d(cin, num_classes, 1)
        self.divisor = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.divisor or x.shape[-2] % self.divisor:
            raise ValueError(
                f"input {tuple(x.shape)}: height and width must be divisible by {self.divisor}"
            )
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)  # (B, num_classes, H, W) logits


def tiny_unet(in_channels: int = 3, num_classes: int = 4, width: int = 16, depth: int = 2) -> UNet:
    return UNet(in_channels, num_classes, width, depth)


def unet(
    in_channels: int = 3,
    num_classes: int = 4,
    width: int = 32,
    depth: int = 3,
    batchnorm: bool = True,
    dropout: float = 0.1,
) -> UNet:
    return UNet(in_channels, num_classes, width, depth, batchnorm, dropout)
