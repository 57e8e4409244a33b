"""Batches of any structure: what the user's collate returns (a dict, a tuple of several
inputs, lists of tensors), walked as a whole.

The engine moves a batch to the device with ``to_device`` and counts its samples with
``batch_size``; preflight walks its tensors with ``leaves`` (determinism, NaN checks, the
data pass's hashes) and names them with their path (``batch['image']``, ``batch[1]``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """``batch`` with every tensor inside it (dicts, tuples, lists, nested) on ``device``;
    anything else (strings, numbers, None) as it is. Tuples keep their type (a named tuple
    stays one)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return type(batch)({k: to_device(v, device, non_blocking) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch


def leaves(batch: Any, path: str = "batch") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in ``batch`` with its path, in a fixed order (dict keys as given)."""
    if isinstance(batch, torch.Tensor):
        yield path, batch
    elif isinstance(batch, Mapping):
        for key, value in batch.items():
            yield from leaves(value, f"{path}[{key!r}]")
    elif isinstance(batch, list | tuple):
        for i, value in enumerate(batch):
            yield from leaves(value, f"{path}[{i}]")
    elif isinstance(batch, int | float | bool) or hasattr(batch, "__array__"):
        yield path, torch.as_tensor(batch)


def head(batch: Any, n: int) -> Any:
    """The first ``n`` samples of ``batch``: every tensor with the batch's size as its
    first dimension cut to ``n``, everything else as it is (the structure kept)."""
    size = batch_size(batch)

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value[:n] if value.ndim and value.shape[0] == size else value
        if isinstance(value, Mapping):
            return type(value)({k: cut(v) for k, v in value.items()})
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*(cut(v) for v in value))
        if isinstance(value, list | tuple):
            return type(value)(cut(v) for v in value)
        return value

    return cut(batch)


def batch_size(batch: Any) -> int:
    """Samples in ``batch``: the first dimension of its first tensor (1 when it has none)."""
    for _, tensor in leaves(batch):
        if tensor.ndim:
            return int(tensor.shape[0])
    return 1


def described(batch: Any) -> str:
    """``{'image': (16, 3, 32, 32) float32, 'label': (16,) int64}``: a batch's shapes."""
    if isinstance(batch, torch.Tensor):
        return f"{tuple(batch.shape)} ({str(batch.dtype).removeprefix('torch.')})"
    if isinstance(batch, Mapping):
        return "{" + ", ".join(f"{k!r}: {described(v)}" for k, v in batch.items()) + "}"
    if isinstance(batch, list | tuple):
        inner = ", ".join(described(v) for v in batch)
        return f"[{inner}]" if isinstance(batch, list) else f"({inner})"
    return type(batch).__name__


def same(a: Any, b: Any) -> bool:
    """Two reads of an item are equal: the same structure, and every tensor equal in
    shape, dtype and values."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if _tensor_like(a) and _tensor_like(b):
        ta, tb = torch.as_tensor(a), torch.as_tensor(b)
        return ta.shape == tb.shape and ta.dtype == tb.dtype and bool(torch.equal(ta, tb))
    return type(a) is type(b) and a == b


def pick(item: Any, key: str) -> Any:
    """``item[key]`` for a dict item, ``item[int(key)]`` for a tuple or list
    (``data.inputs``/``data.target`` name a batch's parts either way)."""
    if isinstance(item, Mapping):
        return item[key]
    if isinstance(item, list | tuple) and key.lstrip("-").isdigit():
        return item[int(key)]
    raise KeyError(key)


def _tensor_like(value: Any) -> bool:
    return isinstance(value, torch.Tensor | int | float | bool) or hasattr(value, "__array__")
