"""An allocation refused inside a step, and the batch size that fits, found by halving.

A GPU out of memory raises ``torch.OutOfMemoryError``; a CPU allocation refused (a
memory limit, ``RLIMIT_AS``, a full machine) raises ``RuntimeError: ... can't allocate
memory`` or ``MemoryError``. Either way the run is not lost: the engine probes the same
batch at half the size, then half again, down to one sample, with a forward and backward
pass (no optimizer step: the weights stay as they were), and the stage stops with the
``out_of_memory`` diagnosis naming the largest size that ran.
"""

from __future__ import annotations

import gc
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dlsteps.data.batches import batch_size, head

# torch's words for a refused allocation (CPU allocator, CUDA caching allocator, MPS)
_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _WORDS)


def release(exc: BaseException) -> None:
    """Free what the failed attempt still holds: the tensors in its traceback's frames
    (the traceback itself stays, for ``--debug``), and the CUDA cache."""
    traceback.clear_frames(exc.__traceback__)
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def fitting_batch(
    model: nn.Module,
    batch: Any,
    loss: Callable[[Any], torch.Tensor],
    backward: bool,
) -> int | None:
    """The largest of ``size // 2, // 4, ..., 1`` samples of ``batch`` (any structure: its
    tensors cut along the batch dimension) whose ``loss`` (and ``backward``) runs; ``None``
    when not even one sample does. Gradients are dropped afterwards."""
    size = batch_size(batch) // 2
    training = model.training
    try:
        while size >= 1:
            try:
                _attempt(model, loss, head(batch, size), backward)
                return size
            except Exception as exc:  # only a refused allocation is tried smaller
                if not is_out_of_memory(exc):
                    raise
                release(exc)
            finally:
                model.zero_grad(set_to_none=True)
            size //= 2
        return None
    finally:
        model.train(training)


def _attempt(
    model: nn.Module, loss: Callable[[Any], torch.Tensor], part: Any, backward: bool
) -> None:
    model.train(backward)
    with torch.set_grad_enabled(backward):
        value = loss(part)
    if backward:
        value.backward()
    del value
