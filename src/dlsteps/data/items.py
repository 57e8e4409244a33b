"""Reading items of the user's data set so that a failure names the split and the index."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from dlsteps.errors import DataError


class NamedItems(Dataset):
    """A data set whose failing ``__getitem__`` names the split and the index.

    Attribute reads fall through to the wrapped set, so ``num_classes``/``in_channels``
    still reach the model builder.
    """

    def __init__(self, dataset: Dataset, split: str, pairs: bool = True) -> None:
        self.dataset, self.split, self.pairs = dataset, split, pairs

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            item = self.dataset[index]
        except Exception as exc:
            raise DataError(
                f"{self.split} item {index}: __getitem__ raised {type(exc).__name__}: {exc}"
            ) from exc
        if self.pairs and not (isinstance(item, tuple | list) and len(item) == 2):
            raise DataError(
                f"{self.split} item {index}: expected an (input, target) pair, "
                f"got {type(item).__name__}"
            )
        return item

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("dataset", "split", "pairs"):  # unpickling in a worker
            raise AttributeError(name)
        return getattr(self.dataset, name)


class BatchShapeError(DataError):
    """Items that cannot be stacked into one batch (different shapes)."""

    code = "shape_mismatch"


class IndexedItems(Dataset):
    """Items of ``dataset`` as ``(index, item)``, so a batch that cannot be formed names
    the data set's own indices (``CheckedCollate``), not positions inside the batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def collate_of(dataset: Any) -> Callable[[list[Any]], Any] | None:
    """The data set's own ``collate_fn`` attribute (a function that pads, or builds a
    dict batch), looked up through wrappers; None: ``default_collate``."""
    fn = getattr(dataset, "collate_fn", None)
    return fn if callable(fn) else None


class CheckedCollate:
    """``collate`` (``default_collate`` unless the data set brings its own ``collate_fn``)
    over ``IndexedItems`` batches; a failure names the indices and shapes of the items that
    did not fit together (picklable: it runs in workers)."""

    def __init__(self, split: str, collate: Callable[[list[Any]], Any] | None = None) -> None:
        self.split, self.collate = split, collate

    def __call__(self, batch: list[tuple[int, Any]]) -> Any:
        indices = [i for i, _ in batch]
        items = [item for _, item in batch]
        try:
            return (self.collate or default_collate)(items)
        except Exception as exc:
            shown = f"{self.split} items {indices[:8]}{', ...' if len(indices) > 8 else ''}"
            if self.collate is not None:
                raise DataError(
                    f"{shown}: the data set's collate_fn raised {type(exc).__name__}: {exc}"
                ) from exc
            pairs = all(isinstance(it, tuple | list) and len(it) == 2 for it in items)
            if pairs:
                inputs = shapes_by_index(indices, [x for x, *_ in items])
                targets = shapes_by_index(indices, [y for *_, y in items])
                what = f"inputs {inputs}; targets {targets}"
            else:
                what = f"items {shapes_by_index(indices, items)}"
            raise BatchShapeError(
                f"{shown} cannot be batched together ({type(exc).__name__}: {exc}): {what}. "
                "Every item of a batch must have the same shape: resize or crop in "
                "__getitem__, or give the data set a collate_fn that pads."
            ) from exc


def shapes_by_index(indices: Sequence[int], values: Sequence[Any]) -> str:
    """``(3, 32, 32) at items 0, 4; (3, 28, 28) at item 9``: each shape and where it is."""
    groups: dict[Any, list[int]] = {}
    for i, v in zip(indices, values, strict=True):
        groups.setdefault(_shape(v), []).append(i)
    return "; ".join(
        f"{shape} at item{'s' if len(at) > 1 else ''} {', '.join(map(str, at[:6]))}"
        + (", ..." if len(at) > 6 else "")
        for shape, at in groups.items()
    )


def _shape(value: Any) -> Any:
    """A value's shape, or the shapes of a structure's parts (dict and tuple items)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_shape(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple) and not all(isinstance(v, int | float) for v in value):
        return "(" + ", ".join(str(_shape(v)) for v in value) + ")"
    try:
        return tuple(torch.as_tensor(value).shape)
    except Exception:
        return type(value).__name__
