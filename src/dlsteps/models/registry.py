"""The built-in models by name, and building a config's model (or the critic)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from dlsteps.errors import ConfigError, ModelError, UserError
from dlsteps.models.cnn import small_cnn
from dlsteps.models.gan import conv_critic, pix2pix_unet
from dlsteps.models.gpt import tiny_gpt
from dlsteps.models.named import named_model
from dlsteps.models.outputs import adapt_output
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
from dlsteps.plugins import call_text, resolve, with_defaults

MODELS: dict[str, Callable[..., nn.Module]] = {
    "tiny_unet": tiny_unet,
    "unet": unet,
    "small_cnn": small_cnn,
    "resnet18_stem": resnet18_stem,
    # aliases of torchvision:NAME with their default class counts (models/zoo.py); any
    # other torchvision or timm model is "torchvision:NAME" / "timm:NAME" (models/named.py)
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "fcn_resnet50": fcn_resnet50,
    "deeplabv3_resnet50": deeplabv3_resnet50,
    "lraspp_mobilenet_v3_large": lraspp_mobilenet_v3_large,
    "pix2pix_unet": pix2pix_unet,
    "tiny_gpt": tiny_gpt,  # a small causal transformer (task: language_model)
}
# critics of the adversarial stage (generative task): ``adversarial.critic.name``
CRITICS: dict[str, Callable[..., nn.Module]] = {"conv_critic": conv_critic}


def build_model(
    name: str,
    args: Mapping[str, Any],
    implied: Mapping[str, Any],
    registry: Mapping[str, Callable[..., nn.Module]] = MODELS,
    key: str = "model",
    output: str | int | None = "auto",
) -> nn.Module:
    """Call the model function; ``implied`` (in_channels, num_classes from the data) fills
    only arguments the function declares and the config left out. ``registry``/``key``
    serve other networks built the same way (the adversarial stage's critic). ``output``
    (``model.output``) picks the prediction from a forward that returns more than a tensor;
    None leaves the forward's result as it is (the config's own step reads it)."""
    fn = named_model(name) if registry is MODELS else None
    fn = fn or resolve(name, registry, f"{key}.name")
    kwargs = with_defaults(fn, args, implied)
    try:
        model = fn(**kwargs)
    except UserError:
        raise  # a built-in's own message already names the key
    except TypeError as exc:
        raise ConfigError(f"{key}.args: {name} does not accept these arguments: {exc}") from exc
    except Exception as exc:
        raise ModelError(
            f"{key}.name: {name}({call_text(kwargs)}) raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"{key}.name: {name} must return a torch.nn.Module, got {type(model).__name__}"
        )
    # a main model without trainable parameters is diagnosed by preflight (no_gradient)
    if registry is not MODELS and not any(p.requires_grad for p in model.parameters()):
        raise ModelError(f"{key}.name: {name} has no trainable parameters")
    return adapt_output(model, output) if output is not None else model
