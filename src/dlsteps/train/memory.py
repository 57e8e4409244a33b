"""An allocation refused inside a step, and the batch size that fits, found by halving.

A GPU out of memory raises ``torch.OutOfMemoryError``; a CPU allocation refused (a
memory limit, ``RLIMIT_AS``, a full machine) raises ``RuntimeError: ... can't allocate
memory`` or ``MemoryError``. Either way the run is not lost: the engine probes the same
batch at half the size, then half again, down to one sample, with a forward and backward
pass (no optimizer step: the weights stay as they were), and the stage stops with the
``out_of_memory`` diagnosis naming the largest size that ran.
"""

from __future__ import annotations

import contextlib
import gc
import traceback

import torch
from torch import nn

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
    loss_fn: nn.Module,
    autocast: contextlib.AbstractContextManager,
    x: torch.Tensor,
    y: torch.Tensor,
    backward: bool,
) -> int | None:
    """The largest of ``len(x) // 2, // 4, ..., 1`` whose forward (and ``backward``) pass
    runs; ``None`` when not even one sample does. Gradients are dropped afterwards."""
    size = x.shape[0] // 2
    training = model.training
    try:
        while size >= 1:
            try:
                _attempt(model, loss_fn, autocast, x[:size], y[:size], backward)
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
    model: nn.Module,
    loss_fn: nn.Module,
    autocast: contextlib.AbstractContextManager,
    x: torch.Tensor,
    y: torch.Tensor,
    backward: bool,
) -> None:
    model.train(backward)
    with torch.set_grad_enabled(backward), autocast:
        loss = loss_fn(model(x), y)
    if backward:
        loss.backward()
    del loss
