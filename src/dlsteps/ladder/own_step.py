"""The step a run trains through when it is not the task's own loss on ``(input, target)``:
the config's ``step`` function, or a LightningModule's ``training_step`` (with its
``self.log`` captured). Both take batches of any structure."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dlsteps.models.lightning import is_lightning
from dlsteps.train.lightning import LogCapture, attach_log, training_step
from dlsteps.train.user_step import StepFunction, resolve_step


@dataclass(frozen=True)
class OwnStep:
    step: StepFunction
    capture: LogCapture | None = None  # a LightningModule's self.log


def own_step(config: object, model: nn.Module) -> OwnStep | None:
    """The config's own step for ``model``, or None for the task's supervised step."""
    name = getattr(config, "step", None)
    if name is not None:
        return OwnStep(resolve_step(name))
    if is_lightning(model):
        return OwnStep(training_step(model), attach_log(model))
    return None
