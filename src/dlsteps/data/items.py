"""Reading items of the user's data set so that a failure names the split and the index."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from dlsteps.errors import DataError


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
