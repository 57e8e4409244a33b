"""``loss: {name, args}`` resolved: a built-in with what it knows about itself, or the
user's own ``package.module:function``.

A built-in knows the targets it fits (class labels, masks, multi-hot vectors, values),
whether it reads one output channel as a binary logit, and its loss at init where that
has a closed form in the output count (cross-entropy ln C, BCE ln 2). The others — your
own loss, Dice, focal — get their reference measured by preflight: the loss of an
all-zero output (every class equally likely, every value 0) on the probe batch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from dlsteps.errors import ConfigError, did_you_mean
from dlsteps.losses import BUILTIN_LOSSES
from dlsteps.losses.modules import NO_IGNORE, BCEWithLogits, Dice, DiceCE, Focal, FunctionLoss
from dlsteps.plugins import resolve

# what a task's targets are, as the losses see them
CLASSES, MASKS, MULTILABEL, VALUES = "classes", "masks", "multilabel", "values"


def _cross_entropy(
    weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    class_weights: Sequence[float] | None = None,
    ignore_index: int = NO_IGNORE,
) -> nn.Module:
    chosen = class_weights or weights
    import torch

    weight = torch.tensor(list(chosen), dtype=torch.float32) if chosen else None
    return nn.CrossEntropyLoss(
        weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )


def _value_loss(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(ignore_index: int = NO_IGNORE, **args: Any) -> nn.Module:
        return cls(**args)

    return build


@dataclass(frozen=True)
class LossKind:
    """A built-in loss: its builder and what it knows about itself."""

    build: Callable[..., nn.Module]
    targets: frozenset[str]
    binary: bool = False  # one output channel is a binary logit
    one_channel_for_two: bool = False  # two classes: the model gets one output channel
    weights: bool = True  # takes per-class weights (the augment stage's class_weights)
    init: Callable[[int, Mapping[str, Any]], float | None] = field(default=lambda c, a: None)


def _ln_classes(classes: int, args: Mapping[str, Any]) -> float | None:
    return math.log(classes) if classes > 1 else None


def _ln_two(classes: int, args: Mapping[str, Any]) -> float | None:
    return math.log(2) if args.get("pos_weight") is None else None


KINDS: dict[str, LossKind] = {
    "cross_entropy": LossKind(_cross_entropy, frozenset({CLASSES, MASKS}), init=_ln_classes),
    "bce_with_logits": LossKind(
        BCEWithLogits,
        frozenset({CLASSES, MASKS, MULTILABEL}),
        binary=True,
        one_channel_for_two=True,
        init=_ln_two,
    ),
    "dice": LossKind(
        Dice, frozenset({MASKS}), binary=True, one_channel_for_two=True, weights=False
    ),
    "dice_ce": LossKind(DiceCE, frozenset({MASKS})),
    "focal": LossKind(Focal, frozenset({CLASSES, MASKS, MULTILABEL}), binary=True),
    "mse": LossKind(_value_loss(nn.MSELoss), frozenset({VALUES}), weights=False),
    "l1": LossKind(_value_loss(nn.L1Loss), frozenset({VALUES}), weights=False),
    "huber": LossKind(_value_loss(nn.HuberLoss), frozenset({VALUES}), weights=False),
}
assert set(KINDS) == set(BUILTIN_LOSSES)


@dataclass(frozen=True)
class ResolvedLoss:
    """The loss a task trains with. ``kind`` is None for the user's own."""

    name: str
    args: Mapping[str, Any]
    kind: LossKind | None
    own: Callable[..., Any] | None = None  # the user's function or nn.Module class/instance

    @property
    def custom(self) -> bool:
        return self.kind is None

    def build(
        self, class_weights: Sequence[float] | None = None, ignore_index: int | None = None
    ) -> nn.Module:
        """A fresh loss module; ``class_weights`` weight the train loss where asked."""
        ignore = NO_IGNORE if ignore_index is None else ignore_index
        if self.kind is not None:
            weights = {"class_weights": class_weights} if self.kind.weights else {}
            try:
                return self.kind.build(**self.args, **weights, ignore_index=ignore)
            except TypeError as exc:
                raise ConfigError(
                    f"loss.args: {self.name} does not accept {dict(self.args)}: {exc}"
                ) from exc
        return _own_loss(self.name, self.own, self.args, class_weights)

    def init_loss(self, classes: int) -> float | None:
        """The loss of a fresh model in closed form, or None where preflight measures it."""
        return self.kind.init(classes, self.args) if self.kind is not None else None


def resolve_loss(
    name: str, args: Mapping[str, Any], targets: str | None, task: str
) -> ResolvedLoss:
    """``loss.name``/``loss.args`` for a task whose targets are ``targets`` (None: a task
    registered from outside, which any loss may serve)."""
    if ":" in name:
        return ResolvedLoss(name, dict(args), None, resolve(name, {}, "loss.name"))
    if name not in KINDS:
        raise ConfigError(
            f"loss.name: unknown loss '{name}'.{did_you_mean(name, KINDS)} Built-ins: "
            f"{', '.join(KINDS)}; or write 'package.module:function'."
        )
    kind = KINDS[name]
    if targets is not None and targets not in kind.targets:
        fitting = [n for n, k in KINDS.items() if targets in k.targets]
        raise ConfigError(
            f"loss.name: {name} does not fit task {task} ({_DESCRIBED[targets]}); "
            f"use one of: {', '.join(fitting)}, or a 'package.module:function' of your own"
        )
    return ResolvedLoss(name, dict(args), kind)


_DESCRIBED = {
    CLASSES: "one class label per input",
    MASKS: "a class label per pixel",
    MULTILABEL: "0/1 targets per label",
    VALUES: "float targets",
}


def _own_loss(
    name: str, own: Any, args: Mapping[str, Any], class_weights: Sequence[float] | None
) -> nn.Module:
    """A class is instantiated with ``args`` (and ``class_weights`` when it declares
    them); a module instance is used as it is; a function is called per batch as
    ``fn(outputs, targets, **args)``."""
    if isinstance(own, nn.Module):
        return own
    if inspect.isclass(own):
        extra = {}
        if class_weights is not None:
            if "class_weights" not in inspect.signature(own).parameters:
                raise ConfigError(
                    f"class_weights: the loss {name} takes no class_weights argument; set "
                    "the stage's class_weights: none"
                )
            extra = {"class_weights": list(class_weights)}
        try:
            module = own(**args, **extra)
        except TypeError as exc:
            raise ConfigError(f"loss.args: {name} does not accept {dict(args)}: {exc}") from exc
        if not callable(module):
            raise ConfigError(f"loss.name: {name}(...) is not callable")
        return module if isinstance(module, nn.Module) else FunctionLoss(module, {})
    if class_weights is not None:
        raise ConfigError(
            f"class_weights: the loss function {name} takes no class weights; set the "
            "stage's class_weights: none, or make the loss a class that accepts class_weights"
        )
    return FunctionLoss(own, args)
