"""The generative track's models: a small U-Net generator and a small conditional critic.

The generator is ``models.unet.UNet`` with an image head (``out_channels`` instead of
classes), trained first with L1 alone. The critic scores an ``(input, image)`` pair, as in
pix2pix, so it judges whether the image fits its input, not only whether it looks real.
It has no batchnorm: the WGAN-GP penalty constrains the gradient of each sample's score
with respect to that sample, which batch statistics would couple across the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from dlsteps.models.unet import UNet


def pix2pix_unet(
    in_channels: int = 1, out_channels: int = 3, width: int = 16, depth: int = 2
) -> UNet:
    """A U-Net mapping ``(B, in_channels, H, W)`` to images ``(B, out_channels, H, W)``."""
    return UNet(in_channels, out_channels, width, depth)


class ConvCritic(nn.Module):
    """Strided conv + LeakyReLU blocks, then one score per sample; no normalisation layers."""

    def __init__(self, in_channels: int, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(depth):
            cout = width * 2**i
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.score = nn.Conv2d(cin, 1, 3, padding=1)
        # He init for LeakyReLU(0.2): with PyTorch's default the score's gradient w.r.t. the
        # image starts ~100x below the norm 1 the penalty asks for, and a short stage ends
        # before the critic has woken up (a false critic_collapse)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = torch.cat([condition, image], dim=1)  # (B, C_in + C_out, H, W)
        return self.score(self.features(x)).mean(dim=(1, 2, 3))  # (B,) scores


def conv_critic(in_channels: int, width: int = 16, depth: int = 3) -> ConvCritic:
    """``in_channels`` = the generator's input channels + its output channels (filled in)."""
    return ConvCritic(in_channels, width, depth)
