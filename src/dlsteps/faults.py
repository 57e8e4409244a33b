"""Faults in the user's data or model during training → one ``UserError`` that names them.

Preflight and the data-stats pass check most mistakes before training, but a stage can
run without preflight (``dlsteps stage full-data``), a data set can break on an item no
check read, and errors raised in DataLoader workers reach the main process re-wrapped
around a traceback text. Everything here turns those into the one-line messages of
``errors.UserError``; anything it does not recognise keeps its traceback.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch.utils.data import Dataset

from dlsteps.errors import DataError, ModelError, UserError

# torch's words for a worker that died without an exception (segfault, os._exit, OOM kill)
_WORKER_DIED = re.compile(r"DataLoader worker \(pid.*?\) (is killed by signal|exited unexpectedly)")


class NamedItems(Dataset):
    """A data set whose failing ``__getitem__`` names the split and the index.

    Attribute reads fall through to the wrapped set, so ``num_classes``/``in_channels``
    still reach the model builder.
    """

    def __init__(self, dataset: Dataset, split: str) -> None:
        self.dataset, self.split = dataset, split

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            item = self.dataset[index]
        except Exception as exc:
            raise DataError(
                f"{self.split} item {index}: __getitem__ raised {type(exc).__name__}: {exc}"
            ) from exc
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise DataError(
                f"{self.split} item {index}: expected an (input, target) pair, "
                f"got {type(item).__name__}"
            )
        return item

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("dataset", "split"):  # unpickling in a worker
            raise AttributeError(name)
        return getattr(self.dataset, name)


def as_user_error(exc: BaseException) -> UserError | None:
    """The user-facing form of ``exc``, or ``None`` when it is not the user's to fix."""
    if isinstance(exc, UserError):
        return _unwrapped(exc)
    if isinstance(exc, RuntimeError) and _WORKER_DIED.search(str(exc)):
        first = str(exc).splitlines()[0].rstrip(". ")
        return DataError(
            f"{first}. A worker crashes like this when __getitem__ segfaults, calls exit or "
            "runs out of memory; set data.num_workers: 0 to see the error in the main process"
        )
    return None


def _unwrapped(exc: UserError) -> UserError:
    """A UserError raised in a DataLoader worker comes back as 'Caught DataError in
    DataLoader worker process 0. Original Traceback ...'; keep only its own message."""
    text = str(exc)
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return exc
    marker = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    _, found, message = text.rpartition(marker)
    if not found:
        return exc
    return type(exc)(f"{message.strip()} (in a DataLoader worker)")


class FirstStepGuard:
    """Wraps a train step: a failure on the very first batch is the model not fitting the
    data (wrong input channels, wrong target shape), reported with the batch's shapes.
    Later failures keep their traceback; the first batch went through, so they are not
    a plain mismatch."""

    def __init__(self, step: Any) -> None:
        self.step = step
        self.first = True

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        if not self.first:
            return self.step(x, y)
        try:
            out = self.step(x, y)
        except Exception as exc:
            raise ModelError(
                f"the first training step raised {type(exc).__name__} on an input batch "
                f"{tuple(x.shape)} ({x.dtype}) with targets {tuple(y.shape)} ({y.dtype}): {exc}"
            ) from exc
        self.first = False
        return out

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("step", "first"):
            raise AttributeError(name)
        return getattr(self.step, name)
