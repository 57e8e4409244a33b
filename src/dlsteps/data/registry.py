"""The built-in data sets by name, and building a config's ``(train, val)`` pair."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from dlsteps.data.digits import digits
from dlsteps.data.hf import hf_dataset
from dlsteps.data.image_folder import image_folder
from dlsteps.data.lightning import lightning_datasets
from dlsteps.data.pix2pix import shapes_pix2pix
from dlsteps.data.segmentation_folder import segmentation_folder
from dlsteps.data.shapes import shapes
from dlsteps.data.text_files import text_files
from dlsteps.errors import ConfigError, DataError, UserError
from dlsteps.models.lightning import PREFIX as LIGHTNING
from dlsteps.plugins import call_text, resolve, with_defaults

DATASETS: dict[str, Callable[..., tuple[Dataset, Dataset]]] = {
    "shapes": shapes,
    "digits": digits,
    "shapes_pix2pix": shapes_pix2pix,
    # the user's files as they are on disk (see each module for its folder layout)
    "image_folder": image_folder,
    "segmentation_folder": segmentation_folder,
    "hf_dataset": hf_dataset,
    # local text files (default: the Python standard library) as next-token blocks
    "text_files": text_files,
}


def build_datasets(
    name: str,
    args: Mapping[str, Any],
    seed: int,
    *,
    run_dir: Path | None = None,
    num_workers: int = 0,
    ignore_index: int | None = None,
) -> tuple[Dataset, Dataset]:
    """Call the data source with ``args``; the run's own values (``seed``, the run
    directory to cache in, the loader's ``num_workers``, ``data.ignore_index``) fill only
    the parameters the source declares and ``args`` leaves out."""
    if name.startswith(LIGHTNING):
        return _checked(name, lightning_datasets(name.removeprefix(LIGHTNING), args))
    fn = resolve(name, DATASETS, "data.name")
    implied = {
        "seed": seed,
        "run_dir": run_dir,
        "num_workers": num_workers,
        "ignore_index": ignore_index,
    }
    kwargs = with_defaults(fn, args, implied)
    try:
        result = fn(**kwargs)
    except UserError:
        raise  # a built-in source's own message already names the key or the file
    except TypeError as exc:
        raise ConfigError(f"data.args: {name} does not accept these arguments: {exc}") from exc
    except Exception as exc:
        raise DataError(
            f"data.name: {name}({call_text(kwargs)}) raised {type(exc).__name__}: {exc}"
        ) from exc
    return _checked(name, result)


def _checked(name: str, result: Any) -> tuple[Dataset, Dataset]:
    """A data source's result: two map-style data sets, neither empty."""
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
