"""The built-in data sets by name, and building a config's ``(train, val)`` pair."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch.utils.data import Dataset

from dlsteps.data.digits import digits
from dlsteps.data.pix2pix import shapes_pix2pix
from dlsteps.data.shapes import shapes
from dlsteps.errors import ConfigError, DataError
from dlsteps.plugins import call_text, resolve, with_defaults

DATASETS: dict[str, Callable[..., tuple[Dataset, Dataset]]] = {
    "shapes": shapes,
    "digits": digits,
    "shapes_pix2pix": shapes_pix2pix,
}


def build_datasets(name: str, args: Mapping[str, Any], seed: int) -> tuple[Dataset, Dataset]:
    fn = resolve(name, DATASETS, "data.name")
    kwargs = with_defaults(fn, args, {"seed": seed})
    try:
        result = fn(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"data.args: {name} does not accept these arguments: {exc}") from exc
    except Exception as exc:
        raise DataError(
            f"data.name: {name}({call_text(kwargs)}) raised {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(result, tuple | list) and len(result) == 2):
        raise DataError(
            f"data.name: {name} must return (train_dataset, val_dataset), "
            f"got {type(result).__name__}"
        )
    train, val = result
    for split, ds in (("train", train), ("val", val)):
        if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
            raise DataError(f"data.name: the {split} set of {name} is not a map-style Dataset")
        if len(ds) == 0:
            raise DataError(f"data.name: the {split} set of {name} is empty")
    return train, val
