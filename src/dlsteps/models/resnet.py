"""``resnet18_stem``: torchvision's ResNet-18 cut after its first blocks, with a new head.

The method's "crippled ResNet-18": real ResNet blocks, a fraction of the parameters.
Batchnorm is replaced by identity in the starting stages (``batchnorm: true`` for
``scale-up``). Random initialisation only: no weights are downloaded.
"""

from __future__ import annotations

from torch import nn


def resnet18_stem(
    in_channels: int = 3,
    num_classes: int = 10,
    blocks: int = 2,
    batchnorm: bool = False,
) -> nn.Sequential:
    """Keep ``blocks`` of ResNet-18's four stages (1–4); 1 stage ≈ 0.16M parameters."""
    if not 1 <= blocks <= 4:
        raise ValueError(f"blocks must be in [1, 4], got {blocks}")
    from torchvision.models import resnet18  # here: torchvision's import takes a second or more

    norm = nn.BatchNorm2d if batchnorm else _no_norm
    net = resnet18(weights=None, norm_layer=norm)
    stem = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=not batchnorm)
    stages = [net.layer1, net.layer2, net.layer3, net.layer4][:blocks]
    width = 64 * 2 ** (blocks - 1)
    return nn.Sequential(
        stem,
        net.bn1,
        net.relu,
        net.maxpool,
        *stages,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),  # (B, num_classes) logits
    )


def _no_norm(channels: int) -> nn.Module:
    return nn.Identity()
