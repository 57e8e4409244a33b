"""The built-in torchvision names: aliases of ``torchvision:NAME`` (``models.named``),
with the class count they default to when the data does not say it. Never downloaded.

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


def _alias(name: str, default_classes: int, doc: str, resnet: bool):
    """``name`` as a model function with today's defaults, built by ``torchvision:name``."""

    def resnet_alias(
        in_channels: int = 3,
        num_classes: int = default_classes,
        small_input: bool = False,
        weights_path: str | None = None,
    ) -> nn.Module:
        from dlsteps.models.named import torchvision_model

        return torchvision_model(name)(
            in_channels, num_classes, weights_path, small_input=small_input
        )

    def segmentation_alias(
        in_channels: int = 3, num_classes: int = default_classes, weights_path: str | None = None
    ) -> nn.Module:
        from dlsteps.models.named import torchvision_model

        return torchvision_model(name)(in_channels, num_classes, weights_path)

    fn = resnet_alias if resnet else segmentation_alias
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


resnet18 = _alias(
    "resnet18",
    10,
    "torchvision ResNet-18 (11.2M parameters); ``small_input`` swaps the 7x7/2 stem and "
    "max-pool for one 3x3/1 convolution, for inputs of a few dozen pixels.",
    resnet=True,
)
resnet34 = _alias("resnet34", 10, "torchvision ResNet-34 (21.3M parameters).", resnet=True)
resnet50 = _alias(
    "resnet50", 10, "torchvision ResNet-50 (23.5M parameters, bottleneck blocks).", resnet=True
)
fcn_resnet50 = _alias(
    "fcn_resnet50",
    21,
    "torchvision FCN with a dilated ResNet-50 backbone (output stride 8; 33M parameters).",
    resnet=False,
)
deeplabv3_resnet50 = _alias(
    "deeplabv3_resnet50",
    21,
    "torchvision DeepLabV3 (ASPP head) on a dilated ResNet-50 (39.6M parameters).",
    resnet=False,
)
lraspp_mobilenet_v3_large = _alias(
    "lraspp_mobilenet_v3_large",
    21,
    "torchvision LR-ASPP on MobileNetV3-Large (3.2M parameters): the light one.",
    resnet=False,
)


def load_weights(model: nn.Module, path: str | None) -> nn.Module:
    """Fill ``model`` from the state dict in ``path`` (a plain state dict, a dlsteps
    checkpoint, a DataParallel file with ``module.`` keys, or one saved from a wrapper
    whose keys start with ``net.``). Read with ``weights_only=True``: a weights file
    cannot run code."""
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
    if not any(k in own for k in state):
        state = {k.removeprefix("net."): v for k, v in state.items()}
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
