"""One pass over the data: content hashes (split overlap), label counts (label range,
baseline, class weights), target moments (regression baseline) and non-finite values.

Two hashes per input: an exact one (bytes, shape, dtype) and a *loose* one, a 128-bit
SimHash of the standardised input, which stays the same when the same image is stored
with another dtype or normalisation (a val set cut from a differently preprocessed copy
of train), yet differs for inputs whose standardised contents are not nearly parallel.

The pass goes through a DataLoader in chunks (with the config's workers), so it scales
to large sets; results are cached as ``data_stats.json`` in the run directory and
shared by preflight, full-data's baseline and augment's class weights. What a baseline
makes of them is the task's (``Task.baseline_loss``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dlsteps.data.batches import leaves, pick
from dlsteps.data.items import NamedItems
from dlsteps.errors import DataError
from dlsteps.rundir.atomic import write_json

MAX_ITEMS = 50_000  # per split; beyond it a seeded random subset is read
LOOSE_BITS = 128
LOOSE_MIN_SIZE = 64  # fewer input values than this: standardised inputs collide too easily
LOOSE_MAX_SIZE = 4096  # larger inputs are subsampled (a fixed stride) before projecting


@dataclass
class SplitStats:
    size: int
    read: int
    label_counts: dict[int, int] = field(default_factory=dict)  # classification/segmentation
    target_mean: list[float] | None = None  # regression/generative: mean target (flattened)
    target_sq_mean: list[float] | None = None
    # value targets: mean |target - train mean target|, the L1 of the mean-target predictor
    l1_to_train_mean: float | None = None
    target_range: list[float] | None = None  # value targets: [min, max] over the split
    hashes: list[str] = field(default_factory=list)
    loose: list[str] = field(default_factory=list)  # SimHash per item ('' when not defined)
    indices: list[int] = field(default_factory=list)
    nonfinite: list[int] = field(default_factory=list)  # indices with NaN/Inf input or target

    def duplicate_share(self, loose: bool = False) -> float:
        """Share of items whose input hash (exact, or ``loose``) repeats within this split."""
        hashes = [h for h in self.loose if h] if loose else self.hashes
        return 1.0 - len(set(hashes)) / len(hashes) if hashes else 0.0


@dataclass
class DataStats:
    train: SplitStats
    val: SplitStats

    def overlap(self, loose: bool = False) -> list[tuple[int, int]]:
        """(train index, val index) pairs whose inputs are byte-identical, or with ``loose``
        identical after standardisation (same content, other dtype or normalisation)."""
        train = self.train.loose if loose else self.train.hashes
        val = self.val.loose if loose else self.val.hashes
        seen = {h: i for h, i in zip(train, self.train.indices, strict=True) if h}
        return [(seen[h], i) for h, i in zip(val, self.val.indices, strict=True) if h and h in seen]

    def to_json(self) -> dict[str, Any]:
        return {"train": asdict(self.train), "val": asdict(self.val)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataStats:
        def split(d: dict[str, Any]) -> SplitStats:
            d = dict(d)
            d["label_counts"] = {int(k): v for k, v in d["label_counts"].items()}
            return SplitStats(**d)

        return cls(split(data["train"]), split(data["val"]))


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


@dataclass(frozen=True)
class ItemParts:
    """Which parts of an item are its input and its target. Default: an ``(input,
    target)`` pair. For the config's own ``step`` the item is any structure: ``inputs``
    and ``target`` are the keys ``data.inputs``/``data.target`` name (None: the whole item
    is input, and there is no target to count). Picklable: it runs in loader workers."""

    pairs: bool = True
    inputs: tuple[str, ...] | None = None
    target: str | None = None

    def __call__(self, item: Any) -> tuple[Any, Any]:
        if self.pairs:
            x, y = item
            return x, y
        try:
            y = pick(item, self.target) if self.target is not None else None
            x = [pick(item, k) for k in self.inputs] if self.inputs else item
        except (KeyError, IndexError, TypeError) as exc:
            raise DataError(
                f"data.inputs/data.target: an item has no part {exc} (its keys: {_keys(item)})"
            ) from exc
        if self.inputs and len(self.inputs) == 1:
            x = x[0]
        return x, y


def _keys(item: Any) -> str:
    if isinstance(item, dict):
        return ", ".join(map(repr, item))
    if isinstance(item, tuple | list):
        return f"indices 0..{len(item) - 1}"
    return type(item).__name__


def _whole(value: Any) -> torch.Tensor:
    """Every tensor of an item part (a tensor, or a dict/tuple/list of them) as one flat
    tensor, for the loose hash: one tensor stays as it is."""
    parts = [t for _, t in leaves(value)]
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p.detach().reshape(-1).double() for p in parts]) if parts else torch.zeros(0)


def _split_stats(
    ds: Dataset,
    name: str,
    labels: bool,
    num_workers: int,
    seed: int,
    train_mean: list[float] | None = None,
    parts: ItemParts = ItemParts(),
) -> SplitStats:
    size = len(ds)
    if size > MAX_ITEMS:
        gen = torch.Generator().manual_seed(seed)
        indices = torch.randperm(size, generator=gen)[:MAX_ITEMS].sort().values.tolist()
    else:
        indices = list(range(size))
    loader = DataLoader(
        _Indexed(NamedItems(ds, name, parts.pairs), indices),
        batch_size=64,
        num_workers=num_workers,
        collate_fn=_as_list,
    )
    stats = SplitStats(size=size, read=len(indices))
    counts: dict[int, int] = {}
    tsum: np.ndarray | None = None
    tsq: np.ndarray | None = None
    abs_to_mean = 0.0
    low, high = math.inf, -math.inf
    for chunk in loader:
        for index, item in chunk:
            x, y = parts(item)
            stats.hashes.append(_digest_all(x))
            stats.loose.append(_simhash(_whole(x)))
            stats.indices.append(index)
            if not all(_finite(t) for _, t in leaves(item)):
                stats.nonfinite.append(index)
            if y is None:
                continue
            y_t = torch.as_tensor(y)
            if labels:
                if y_t.is_floating_point() and not torch.all(y_t == y_t.round()):
                    raise DataError(
                        f"{name} item {index}: target is a float tensor with fractional values; "
                        "this task needs integer class labels"
                    )
                values, n = torch.unique(y_t.long(), return_counts=True)
                for v, c in zip(values.tolist(), n.tolist(), strict=True):
                    counts[v] = counts.get(v, 0) + c
            else:
                flat = y_t.double().reshape(-1).numpy()
                tsum = flat.copy() if tsum is None else tsum + flat
                tsq = flat**2 if tsq is None else tsq + flat**2
                if flat.size:
                    low, high = min(low, float(flat.min())), max(high, float(flat.max()))
                if train_mean is not None:
                    abs_to_mean += float(np.mean(np.abs(flat - np.asarray(train_mean))))
    stats.label_counts = dict(sorted(counts.items()))
    if train_mean is not None and indices and not labels:
        stats.l1_to_train_mean = abs_to_mean / len(indices)
    if low <= high:
        stats.target_range = [low, high]
    if tsum is not None and tsq is not None:
        n = len(indices)
        # per-element moments are what a constant predictor needs; keep them small
        stats.target_mean = [float(np.mean(tsum / n))] if tsum.size > 4096 else (tsum / n).tolist()
        stats.target_sq_mean = [float(np.mean(tsq / n))] if tsq.size > 4096 else (tsq / n).tolist()
    return stats


class _Indexed(Dataset):
    """Items of ``ds`` at ``indices``, each with its index (user errors name it)."""

    def __init__(self, ds: NamedItems, indices: list[int]) -> None:
        self.ds, self.indices = ds, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        index = self.indices[i]
        return index, self.ds[index]


def _digest_all(value: Any) -> str:
    """The exact hash of an input: its one tensor, or every tensor of a dict/tuple/list
    input with its path (so ``{'a': x, 'b': y}`` and ``{'a': y, 'b': x}`` differ)."""
    h = hashlib.blake2b(digest_size=16)
    found = list(leaves(value))
    for path, t in found:
        x = t.detach().cpu().contiguous()
        shown = (tuple(x.shape), str(x.dtype)) if len(found) == 1 else (path, tuple(x.shape))
        h.update(str(shown).encode())
        h.update(x.numpy().tobytes() if x.dtype != torch.bfloat16 else x.float().numpy().tobytes())
    return h.hexdigest()


def _finite(t: torch.Tensor) -> bool:
    return not t.is_floating_point() or bool(torch.isfinite(t).all())


_PROJECTIONS: dict[int, torch.Tensor] = {}


def _simhash(x: torch.Tensor) -> str:
    """Signs of 128 fixed random projections of the standardised input, as hex.

    Standardising removes any affine change of intensity (uint8 vs float, /255, mean/std
    normalisation), so the same image stored two ways gets the same hash; two inputs
    agree on a bit with probability 1 - angle/pi, so only nearly parallel contents
    collide on all 128 bits."""
    flat = x.detach().reshape(-1).double()
    if flat.numel() < LOOSE_MIN_SIZE or not bool(torch.isfinite(flat).all()):
        return ""
    flat = flat[:: max(1, flat.numel() // LOOSE_MAX_SIZE)][:LOOSE_MAX_SIZE]
    std = flat.std()
    if not std > 1e-12:
        return ""
    z = (flat - flat.mean()) / std
    n = z.numel()
    if n not in _PROJECTIONS:
        gen = torch.Generator().manual_seed(n)
        _PROJECTIONS[n] = torch.randn(n, LOOSE_BITS, generator=gen, dtype=torch.float64)
    bits = (z @ _PROJECTIONS[n] > 0).tolist()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):032x}"


def data_stats(
    train: Dataset,
    val: Dataset,
    *,
    labels: bool,
    num_workers: int = 0,
    seed: int = 0,
    cache: Path | None = None,
    save: bool = True,
    parts: ItemParts = ItemParts(),
) -> DataStats:
    """Compute once per run: ``labels`` counts class labels (else target moments), and the
    result is cached in the file ``cache`` (the run directory's ``data_stats.json``),
    written when ``save``."""
    path = cache
    if path is not None and path.exists():
        try:
            return DataStats.from_json(json.loads(path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    train_stats = _split_stats(train, "train", labels, num_workers, seed, parts=parts)
    val_stats = _split_stats(
        val, "val", labels, num_workers, seed, train_stats.target_mean, parts=parts
    )
    stats = DataStats(train_stats, val_stats)
    if path is not None and save:
        write_json(path, stats.to_json())
    return stats
