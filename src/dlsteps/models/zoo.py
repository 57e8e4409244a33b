"""The ``scale-up`` stage's bigger models: torchvision's own architectures, never downloaded.

Classification: ``resnet18``, ``resnet34``, ``resnet50``. Segmentation: ``fcn_resnet50``,
``deeplabv3_resnet50``, ``lraspp_mobilenet_v3_large``. Every one starts from a random
initialisation (``weights=None, weights_backbone=None``: dlsteps never fetches anything at
run time), or from ``weights_path``, a state dict in a local file — for example
torchvision's pretrained file downloaded once by hand, or a ``checkpoint.pt`` of an
earlier run. Tensors whose shape differs from the model's (the head when
``num_classes`` differs, the stem when ``in_channels`` differs) keep their random
initialisation; every other parameter must be in the file.

    model: {name: resnet18, args: {small_input: true}}
    model: {name: lraspp_mobilenet_v3_large, args: {weights_path: weights/lraspp.pth}}

torchvision is imported inside each builder: its import costs a second or more, and a
config that never names these models (preflight of the starting models) never pays it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dlsteps.errors import ModelError


class SegmentationLogits(nn.Module):
    """torchvision's segmentation models return ``{"out": logits, "aux": ...}``; dlsteps'
    loop wants the ``(B, C, H, W)`` logits tensor itself."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]  # (B, num_classes, H, W) logits, upsampled to the input


def _resnet(
    name: str,
    in_channels: int,
    num_classes: int,
    small_input: bool,
    weights_path: str | None,
) -> nn.Module:
    from torchvision import models

    net = getattr(models, name)(weights=None, num_classes=num_classes)
    if small_input:
        # CIFAR-style stem for tiny images (8x8 digits, 32x32): no 4x downsampling up front
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return load_weights(net, weights_path)


def resnet18(
    in_channels: int = 3,
    num_classes: int = 10,
    small_input: bool = False,
    weights_path: str | None = None,
) -> nn.Module:
    """torchvision ResNet-18 (11.2M parameters); ``small_input`` swaps the 7x7/2 stem and
    max-pool for one 3x3/1 convolution, for inputs of a few dozen pixels."""
    return _resnet("resnet18", in_channels, num_classes, small_input, weights_path)


def resnet34(
    in_channels: int = 3,
    num_classes: int = 10,
    small_input: bool = False,
    weights_path: str | None = None,
) -> nn.Module:
    """torchvision ResNet-34 (21.3M parameters)."""
    return _resnet("resnet34", in_channels, num_classes, small_input, weights_path)


def resnet50(
    in_channels: int = 3,
    num_classes: int = 10,
    small_input: bool = False,
    weights_path: str | None = None,
) -> nn.Module:
    """torchvision ResNet-50 (23.5M parameters, bottleneck blocks)."""
    return _resnet("resnet50", in_channels, num_classes, small_input, weights_path)


def fcn_resnet50(
    in_channels: int = 3, num_classes: int = 21, weights_path: str | None = None
) -> nn.Module:
    """torchvision FCN with a dilated ResNet-50 backbone (output stride 8; 33M parameters)."""
    from torchvision.models import segmentation

    net = segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
    )
    if in_channels != 3:
        net.backbone.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return load_weights(SegmentationLogits(net), weights_path, prefix="net.")


def deeplabv3_resnet50(
    in_channels: int = 3, num_classes: int = 21, weights_path: str | None = None
) -> nn.Module:
    """torchvision DeepLabV3 (ASPP head) on a dilated ResNet-50 (39.6M parameters)."""
    from torchvision.models import segmentation

    net = segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
    )
    if in_channels != 3:
        net.backbone.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return load_weights(SegmentationLogits(net), weights_path, prefix="net.")


def lraspp_mobilenet_v3_large(
    in_channels: int = 3, num_classes: int = 21, weights_path: str | None = None
) -> nn.Module:
    """torchvision LR-ASPP on MobileNetV3-Large (3.2M parameters): the light one."""
    from torchvision.models import segmentation

    net = segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=num_classes
    )
    if in_channels != 3:
        net.backbone["0"][0] = nn.Conv2d(in_channels, 16, 3, stride=2, padding=1, bias=False)
    return load_weights(SegmentationLogits(net), weights_path, prefix="net.")


def load_weights(model: nn.Module, path: str | None, prefix: str = "") -> nn.Module:
    """Fill ``model`` from the state dict in ``path`` (a plain state dict, a dlsteps
    checkpoint, or torchvision's file for the unwrapped network, whose keys lack
    ``prefix``). Read with ``weights_only=True``: a weights file cannot run code."""
    if path is None:
        return model
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelError(f"model.args.weights_path: no file at {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"model.args.weights_path: {file} is not a readable PyTorch state dict ({exc})"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a dlsteps checkpoint.pt
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"model.args.weights_path: {file} holds no state dict")
    own = model.state_dict()
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if prefix and not any(k in own for k in state):
        state = {prefix + k: v for k, v in state.items()}
    fitting = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    refit = {k for k, v in state.items() if k in own and v.shape != own[k].shape}
    missing = [k for k in own if k not in fitting and k not in refit]
    if missing:
        raise ModelError(
            f"model.args.weights_path: {file} lacks {len(missing)} of the model's "
            f"{len(own)} tensors (first: {', '.join(missing[:3])}); is it for this "
            f"architecture?"
        )
    model.load_state_dict(fitting, strict=False)
    return model
