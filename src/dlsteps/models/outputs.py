"""Turning what a model's forward returns into the one prediction tensor dlsteps reads.

torchvision's segmentation models return ``{"out": logits, "aux": ...}``, Hugging Face
models an object with ``.logits``, Inception a tuple of logits and auxiliary logits.
``model.output`` says which part is the prediction (``auto`` finds it); a forward hook
picks it, so the model itself, its parameter names and its checkpoints stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dlsteps.errors import ModelError

AUTO_KEYS = ("out", "logits")


class PickOutput:
    """A forward hook returning the prediction part of a model's output (picklable, so a
    model with it can go to DataLoader workers or be deep-copied)."""

    def __init__(self, spec: str | int) -> None:
        self.spec = spec

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> torch.Tensor | None:
        if isinstance(output, torch.Tensor) and self.spec == "auto":
            return None  # keep it: the common case costs one comparison
        return pick(output, self.spec)


def pick(output: Any, spec: str | int) -> torch.Tensor:
    """The prediction tensor of ``output`` by ``spec`` (``auto``, a key or attribute name,
    or a tuple index)."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        if isinstance(output, tuple | list) and -len(output) <= spec < len(output):
            return _tensor(output[spec], f"element {spec}")
        raise ModelError(
            f"model.output: {spec} indexes a tuple, but the model returned {_kind(output)}"
        )
    if spec != "auto":
        if isinstance(output, Mapping) and spec in output:
            return _tensor(output[spec], f"'{spec}'")
        if hasattr(output, spec):
            return _tensor(getattr(output, spec), f".{spec}")
        raise ModelError(f"model.output: the model returned {_kind(output)}, without '{spec}'")
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        for key in AUTO_KEYS:
            if key in output:
                return _tensor(output[key], f"'{key}'")
        if len(output) == 1:
            return _tensor(next(iter(output.values())), "its one entry")
    elif isinstance(output, tuple | list) and output:
        return _tensor(output[0], "element 0")
    elif isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    raise ModelError(
        f"the model returned {_kind(output)}; set model.output to the key, attribute or "
        "tuple index of the prediction (logits)"
    )


def _tensor(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ModelError(
            f"model.output: {what} of the model's output is {type(value).__name__}, not a tensor"
        )
    return value


def _kind(output: Any) -> str:
    if isinstance(output, Mapping):
        return f"a dict with keys {list(output)[:8]}"
    if isinstance(output, tuple | list):
        return f"a {type(output).__name__} of {len(output)}"
    return f"a {type(output).__name__}"


def adapt_output(model: nn.Module, spec: str | int) -> nn.Module:
    """Make ``model(x)`` return the prediction tensor (in place; returns ``model``)."""
    model.register_forward_hook(PickOutput(spec))
    return model
