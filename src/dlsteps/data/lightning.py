"""``data.name: "lightning:package.module:LitDataModule"``: a LightningDataModule as it is.

dlsteps calls ``prepare_data()`` and ``setup("fit")``, then takes the train and val data
sets and their collate functions from ``train_dataloader()`` and ``val_dataloader()``:
its own loaders (the overfit stages' few samples, seeded order, resumable steps) read
them with ``data.batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch.utils.data import DataLoader, Dataset

from dlsteps.errors import DataError
from dlsteps.models.lightning import require_lightning
from dlsteps.plugins import resolve


class WithCollate(Dataset):
    """A data set with the collate function of the loader it came from
    (``data.items.collate_of`` finds it); attributes fall through to the data set."""

    def __init__(self, dataset: Dataset, collate_fn: Callable[[list[Any]], Any] | None) -> None:
        self.dataset, self.collate_fn = dataset, collate_fn

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("dataset", "collate_fn"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def lightning_datasets(name: str, args: Mapping[str, Any]) -> tuple[Dataset, Dataset]:
    """Train and val sets of the DataModule ``package.module:Class`` built with ``args``."""
    require_lightning("data.name")
    cls = resolve(name, {}, "data.name")
    module = cls(**args)
    for hook, call in (("prepare_data", ()), ("setup", ("fit",))):
        try:
            getattr(module, hook)(*call)
        except Exception as exc:
            raise DataError(
                f"data.name: lightning:{name}.{hook}() raised {type(exc).__name__}: {exc}"
            ) from exc
    return _from_loader(module, "train_dataloader", name), _from_loader(
        module, "val_dataloader", name
    )


def _from_loader(module: Any, hook: str, name: str) -> Dataset:
    try:
        loader = getattr(module, hook)()
    except Exception as exc:
        raise DataError(
            f"data.name: lightning:{name}.{hook}() raised {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(loader, list | tuple) and len(loader) == 1:
        loader = loader[0]
    if not isinstance(loader, DataLoader):
        raise DataError(
            f"data.name: lightning:{name}.{hook}() returned {type(loader).__name__}; dlsteps "
            "needs one torch DataLoader (it reads its dataset and collate_fn)"
        )
    collate = loader.collate_fn if loader.collate_fn is not _default_collate() else None
    return WithCollate(loader.dataset, collate)


def _default_collate() -> Callable[..., Any]:
    from torch.utils.data._utils.collate import default_collate

    return default_collate
