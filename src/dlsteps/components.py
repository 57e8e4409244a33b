"""Built-in registry plus ``package.module:function`` resolution for the user's own code.

Nothing in a config executes code except the ``module:function`` the user wrote there;
the current working directory is importable so ``my_data.py`` beside the config works.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from dlsteps.data.digits import digits
from dlsteps.data.pix2pix import shapes_pix2pix
from dlsteps.data.shapes import shapes
from dlsteps.errors import ConfigError, DataError, ModelError, did_you_mean
from dlsteps.models.cnn import small_cnn
from dlsteps.models.gan import conv_critic, pix2pix_unet
from dlsteps.models.resnet import resnet18_stem
from dlsteps.models.unet import tiny_unet, unet
from dlsteps.models.zoo import (
    deeplabv3_resnet50,
    fcn_resnet50,
    lraspp_mobilenet_v3_large,
    resnet18,
    resnet34,
    resnet50,
)

DATASETS: dict[str, Callable[..., tuple[Dataset, Dataset]]] = {
    "shapes": shapes,
    "digits": digits,
    "shapes_pix2pix": shapes_pix2pix,
}
MODELS: dict[str, Callable[..., nn.Module]] = {
    "tiny_unet": tiny_unet,
    "unet": unet,
    "small_cnn": small_cnn,
    "resnet18_stem": resnet18_stem,
    # scale-up: torchvision architectures, random init or a local weights_path (models/zoo.py)
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "fcn_resnet50": fcn_resnet50,
    "deeplabv3_resnet50": deeplabv3_resnet50,
    "lraspp_mobilenet_v3_large": lraspp_mobilenet_v3_large,
    "pix2pix_unet": pix2pix_unet,
}
# critics of the adversarial stage (generative task): ``adversarial.critic.name``
CRITICS: dict[str, Callable[..., nn.Module]] = {"conv_critic": conv_critic}


def resolve(name: str, registry: Mapping[str, Callable[..., Any]], key: str) -> Callable[..., Any]:
    """A built-in by name, or ``package.module:function`` imported from the user's code."""
    if ":" not in name:
        if name in registry:
            return registry[name]
        raise ConfigError(
            f"{key}: unknown built-in '{name}'.{did_you_mean(name, registry)} "
            f"Built-ins: {', '.join(sorted(registry))}; or write 'package.module:function'."
        )
    module_name, _, attr = name.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{key}: cannot import module '{module_name}' ({exc})") from exc
    except Exception as exc:
        raise ConfigError(
            f"{key}: importing '{module_name}' raised {type(exc).__name__}: {exc}"
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise ConfigError(
            f"{key}: module '{module_name}' has no function '{attr}'.{did_you_mean(attr, public)}"
        )
    return fn


def build_datasets(name: str, args: Mapping[str, Any], seed: int) -> tuple[Dataset, Dataset]:
    fn = resolve(name, DATASETS, "data.name")
    kwargs = _with_defaults(fn, args, {"seed": seed})
    try:
        result = fn(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"data.args: {name} does not accept these arguments: {exc}") from exc
    except Exception as exc:
        raise DataError(
            f"data.name: {name}({_fmt(kwargs)}) raised {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(result, tuple | list) and len(result) == 2):
        raise DataError(
            f"data.name: {name} must return (train_dataset, val_dataset), "
            f"got {type(result).__name__}"
        )
    train, val = result
    for split, ds in (("train", train), ("val", val)):
        if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
            raise DataError(f"data.name: the {split} set of {name} is not a map-style Dataset")
        if len(ds) == 0:
            raise DataError(f"data.name: the {split} set of {name} is empty")
    return train, val


def build_model(
    name: str,
    args: Mapping[str, Any],
    implied: Mapping[str, Any],
    registry: Mapping[str, Callable[..., nn.Module]] = MODELS,
    key: str = "model",
) -> nn.Module:
    """Call the model function; ``implied`` (in_channels, num_classes from the data) fills
    only arguments the function declares and the config left out. ``registry``/``key``
    serve other networks built the same way (the adversarial stage's critic)."""
    fn = resolve(name, registry, f"{key}.name")
    kwargs = _with_defaults(fn, args, implied)
    try:
        model = fn(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{key}.args: {name} does not accept these arguments: {exc}") from exc
    except Exception as exc:
        raise ModelError(
            f"{key}.name: {name}({_fmt(kwargs)}) raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"{key}.name: {name} must return a torch.nn.Module, got {type(model).__name__}"
        )
    # a main model without trainable parameters is diagnosed by preflight (no_gradient)
    if registry is not MODELS and not any(p.requires_grad for p in model.parameters()):
        raise ModelError(f"{key}.name: {name} has no trainable parameters")
    return model


def _with_defaults(
    fn: Callable[..., Any], args: Mapping[str, Any], implied: Mapping[str, Any]
) -> dict:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return dict(args)
    extra = {k: v for k, v in implied.items() if k in params and k not in args and v is not None}
    return {**extra, **args}


def _fmt(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
