"""A failure inside the training loop, told as the user's: which step, which module.

The engine reports that a step raised (``StepFailed``: the step, train or val, the batch's
shapes); here it becomes one ``UserError`` with a code, naming the model's module where
it happened and the first line of the user's own code on the way, so the run records a
stage ``error`` and exits 2 instead of printing torch's traceback (``--debug`` shows it).
"""

from __future__ import annotations

import traceback
from pathlib import Path

import torch
from torch import nn

import dlsteps
from dlsteps.errors import ModelError, UserError
from dlsteps.train.engine import OutOfMemory, StepFailed

# torch's words when a batchnorm layer sees one value per channel in training mode, told
BATCHNORM_ONE_VALUE = (
    ". A batchnorm layer saw a single value per channel: one sample (overfit-one) whose "
    "feature map has shrunk to 1x1. Start without batchnorm (model.args.batchnorm: false "
    "for torchvision:/timm: models), or feed larger images (data.args.size)"
)
# Code under these directories is the library's, not the user's.
_LIBRARIES = tuple(str(Path(m.__file__).parent) for m in (dlsteps, torch, traceback))


def step_error(failed: StepFailed, model: nn.Module) -> UserError:
    """The user-facing error of ``failed`` (its ``__cause__`` is what the step raised)."""
    cause = failed.__cause__
    if isinstance(cause, UserError):
        return cause
    assert cause is not None
    if isinstance(failed, OutOfMemory):
        return _out_of_memory(failed, cause)
    module, place = _where(cause, model)
    where = (f" in module '{module}'" if module else "") + (f" at {place}" if place else "")
    text = f"{type(cause).__name__}{where}: {cause}"
    x, y = failed.shapes
    batch = f"an input batch {x} with targets {y}" if y is not None else f"a batch {x}"
    if failed.step == 1 and failed.phase == "train step":
        message = f"the first training step raised {text}, on {batch}"
    elif y is not None:
        message = f"step {failed.step} ({failed.phase}, inputs {x}, targets {y}) raised {text}"
    else:
        message = f"step {failed.step} ({failed.phase}, batch {x}) raised {text}"
    if "more than 1 value per channel" in str(cause):
        message += BATCHNORM_ONE_VALUE
    error = ModelError(f"{message}. Run with --debug for the traceback.")
    error.step = failed.step  # type: ignore[attr-defined]
    return error


def _out_of_memory(failed: OutOfMemory, cause: BaseException) -> UserError:
    """The batch size that fits, as the one thing to change (``out_of_memory``)."""
    said = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else ""
    what = f"{type(cause).__name__}: {said}" if said else type(cause).__name__
    head = (
        f"step {failed.step} ({failed.phase}): out of memory at batch size {failed.size} ({what})"
    )
    if failed.fits is None:
        fix = (
            "not even one sample fits: use a smaller model or smaller inputs, or a device "
            "with more memory"
        )
    else:
        fix = (
            f"batch size {failed.fits} fits (found by halving {failed.size}): set "
            f"data.batch_size: {failed.fits} (in overfit-few, stages.overfit-few.samples), "
            "or use a smaller model; on CUDA, precision: bf16 halves the activations"
        )
    error = UserError(f"{head}. {fix}. Run with --debug for the traceback.", "out_of_memory")
    error.step = failed.step  # type: ignore[attr-defined]
    return error


def _where(exc: BaseException, model: nn.Module) -> tuple[str | None, str | None]:
    """The deepest of the model's modules on the traceback (``''`` names the model
    itself), and the deepest line of code outside dlsteps, torch and the standard
    library: the user's."""
    names = {id(m): name or type(m).__name__ for name, m in model.named_modules()}
    module = place = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            module = names[id(owner)]
        file = frame.f_code.co_filename
        if not file.startswith(_LIBRARIES) and "site-packages" not in file:
            place = f"{Path(file).name}:{line} in {frame.f_code.co_name}"
    return module, place
