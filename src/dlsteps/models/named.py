"""Models by library and name: ``torchvision:NAME`` and ``timm:NAME``, never downloaded.

``torchvision:NAME`` is any classification or segmentation builder of
``torchvision.models`` (``torchvision.models.list_models()``), built with ``weights=None``
(and ``weights_backbone=None``) and ``num_classes`` from the data. With ``in_channels``
other than 3 the first convolution that reads 3 channels is replaced by one that reads
``in_channels``; ``small_input`` gives ResNets a 3×3/1 stem without max-pool for images
of a few dozen pixels. ``timm:NAME`` calls ``timm.create_model(NAME, pretrained=False,
num_classes=..., in_chans=...)`` (the optional extra ``pip install 'dlsteps[timm]'``).
Either starts from a random initialisation or from ``weights_path``, a local state dict
(``models.zoo.load_weights``: tensors whose shape differs keep their initialisation).
``batchnorm: false`` swaps every batchnorm layer for identity (the ladder's plain
start). Any further ``model.args`` go to the builder (``width_mult``, ``drop_rate``, ...).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from dlsteps.errors import ConfigError, did_you_mean
from dlsteps.models.lightning import lightning_model
from dlsteps.models.zoo import load_weights

PREFIXES = ("torchvision", "timm")


def torchvision_model(name: str) -> Callable[..., nn.Module]:
    """A model function for ``torchvision:NAME`` (the arguments dlsteps fills from the
    data are in its signature, so ``build_model`` passes them)."""
    from torchvision import models

    classification = models.list_models(module=models)
    segmentation = models.list_models(module=models.segmentation)
    if name not in classification and name not in segmentation:
        if name in models.list_models():
            raise ConfigError(
                f"model.name: torchvision:{name} is a detection, video, optical-flow or "
                "quantized model; dlsteps builds torchvision's classification and "
                "segmentation models"
            )
        raise ConfigError(
            f"model.name: torchvision has no model '{name}'."
            f"{did_you_mean(name, classification + segmentation)} See "
            "torchvision.models.list_models()"
        )
    builder = models.get_model_builder(name)
    dense = name in segmentation

    def build(
        in_channels: int = 3,
        num_classes: int | None = None,
        weights_path: str | None = None,
        small_input: bool = False,
        batchnorm: bool = True,
        **kwargs: Any,
    ) -> nn.Module:
        accepted = inspect.signature(builder).parameters
        kwargs = {"weights": None, **kwargs}
        if "weights_backbone" in accepted:
            kwargs.setdefault("weights_backbone", None)  # its default downloads ImageNet weights
        if dense:
            kwargs.setdefault("aux_loss", False)
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        net = builder(**kwargs)
        if small_input:
            _small_stem(net, in_channels, name)
        elif in_channels != 3:
            replace_first_conv(net, in_channels, name)
        return load_weights(net if batchnorm else without_batchnorm(net), weights_path)

    return build


def timm_model(name: str) -> Callable[..., nn.Module]:
    """A model function for ``timm:NAME``."""
    try:
        import timm
    except ImportError as exc:
        raise ConfigError(
            f"model.name: timm:{name} needs the timm package: pip install 'dlsteps[timm]'"
        ) from exc
    if not timm.is_model(name):
        raise ConfigError(
            f"model.name: timm has no model '{name}'.{did_you_mean(name, timm.list_models())} "
            "See timm.list_models()"
        )

    def build(
        in_channels: int = 3,
        num_classes: int | None = None,
        weights_path: str | None = None,
        batchnorm: bool = True,
        **kwargs: Any,
    ) -> nn.Module:
        if kwargs.pop("pretrained", False):
            raise ConfigError(
                "model.args.pretrained: dlsteps never downloads weights; download them once "
                "by hand and set model.args.weights_path"
            )
        extra = {"num_classes": num_classes} if num_classes is not None else {}
        net = timm.create_model(name, pretrained=False, in_chans=in_channels, **extra, **kwargs)
        return load_weights(net if batchnorm else without_batchnorm(net), weights_path)

    return build


BUILDERS: dict[str, Callable[[str], Callable[..., nn.Module]]] = {
    "torchvision": torchvision_model,
    "timm": timm_model,
    "lightning": lightning_model,  # a LightningModule class: "lightning:pkg.mod:LitModel"
}


def named_model(name: str) -> Callable[..., nn.Module] | None:
    """The model function for ``LIBRARY:NAME``, or None when ``name`` names no library."""
    library, sep, model = name.partition(":")
    if not sep or library not in BUILDERS:
        return None
    if not model:
        raise ConfigError(f"model.name: '{name}' names no model after '{library}:'")
    return BUILDERS[library](model)


def without_batchnorm(net: nn.Module) -> nn.Module:
    """Every batchnorm layer replaced by identity: the ladder's plain start (batchnorm
    makes one-sample overfitting noisy, and a short run's running statistics can make the
    eval-mode model ignore its input); scale-up turns it back on with ``batchnorm: true``.
    Weights files with batchnorm tensors still load (those tensors are skipped)."""
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, child_name, nn.Identity())
    return net


def replace_first_conv(net: nn.Module, in_channels: int, name: str) -> None:
    """Swap the first ``Conv2d`` that reads 3 channels (the stem of every torchvision
    backbone) for one reading ``in_channels``, with the same shape otherwise."""
    for parent in net.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                setattr(
                    parent,
                    child_name,
                    nn.Conv2d(
                        in_channels,
                        child.out_channels,
                        child.kernel_size,
                        child.stride,
                        child.padding,
                        child.dilation,
                        child.groups if child.groups == 1 else in_channels,
                        child.bias is not None,
                        child.padding_mode,
                    ),
                )
                return
    raise ConfigError(
        f"model.args.in_channels: {name} has no convolution reading 3 channels to replace "
        f"for {in_channels}-channel inputs"
    )


def _small_stem(net: nn.Module, in_channels: int, name: str) -> None:
    """CIFAR-style stem for tiny images: no 4× downsampling up front (ResNets)."""
    if not (isinstance(getattr(net, "conv1", None), nn.Conv2d) and hasattr(net, "maxpool")):
        raise ConfigError(
            f"model.args.small_input: only ResNet-style models (conv1 + maxpool) have it; "
            f"{name} does not"
        )
    net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
