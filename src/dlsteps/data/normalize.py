"""Per-channel normalisation of image inputs, from the train split's own statistics.

``normalize: train`` (the default of the folder sources) measures the mean and standard
deviation of each channel over the train images (resized as the data set serves them;
at most ``MAX_FILES`` of them, a seeded sample) in one DataLoader pass with the run's
workers, and caches the result in the run directory's ``image_stats.json``: a resumed
run, and every stage, uses the same numbers, and the pass runs once per run. The same
pass finds a folder of differently sized images before a batch fails to stack.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from dlsteps.errors import ConfigError, DataError
from dlsteps.rundir.atomic import write_json
from dlsteps.rundir.layout import IMAGE_STATS_JSON

MAX_FILES = 2000  # the statistics of a few thousand images are those of the whole set
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
STD_FLOOR = 1e-3  # a constant channel (a blank border) must not blow up when divided by


@dataclass(frozen=True)
class Normalization:
    """``(x - mean) / std`` per channel of a ``(C, H, W)`` float image in [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        # (C, 1, 1) tensors built once; they broadcast over H and W
        object.__setattr__(self, "_mean", torch.tensor(self.mean).view(-1, 1, 1))
        object.__setattr__(self, "_std", torch.tensor(self.std).view(-1, 1, 1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._mean) / self._std  # type: ignore[attr-defined]


# (file index) -> float (C, H, W) image in [0, 1] as served (resized), and its file's size
Reader = Callable[[int], tuple[torch.Tensor, tuple[int, int]]]


def normalization(
    spec: str | Mapping[str, Sequence[float]] | None,
    *,
    reader: Reader,
    count: int,
    channels: int,
    describe: str,
    run_dir: Path | None,
    num_workers: int = 0,
    seed: int = 0,
    check_sizes: bool = False,
    names: Callable[[int], str] = str,
) -> Normalization | None:
    """What ``data.args.normalize`` asks for: ``train`` (measured, cached), ``imagenet``,
    ``none`` (inputs stay in [0, 1]) or ``{mean: [...], std: [...]}``. ``describe``
    identifies the data (source, root, options, files) in the cache."""
    if spec in (None, "none", False):
        return None
    if isinstance(spec, Mapping):
        return _explicit(spec, channels)
    if spec == "imagenet":
        if channels == 3:
            return Normalization(IMAGENET["mean"], IMAGENET["std"])
        return Normalization((sum(IMAGENET["mean"]) / 3,), (sum(IMAGENET["std"]) / 3,))
    if spec != "train":
        raise ConfigError(
            f"data.args.normalize: expected train, imagenet, none or {{mean: [...], std: "
            f"[...]}}, got {spec!r}"
        )
    key = hashlib.blake2b(describe.encode(), digest_size=12).hexdigest()
    cache = run_dir / IMAGE_STATS_JSON if run_dir is not None else None
    cached = _read_cache(cache).get(key)
    if cached is not None:
        return Normalization(tuple(cached["mean"]), tuple(cached["std"]))
    entry = _measure(reader, count, num_workers, seed, check_sizes, names)
    if cache is not None:
        write_json(cache, {**_read_cache(cache), key: {"data": describe, **entry}})
    return Normalization(tuple(entry["mean"]), tuple(entry["std"]))


def _explicit(spec: Mapping[str, Sequence[float]], channels: int) -> Normalization:
    try:
        mean, std = [float(v) for v in spec["mean"]], [float(v) for v in spec["std"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"data.args.normalize: expected {{mean: [...], std: [...]}} with {channels} "
            f"numbers each, got {dict(spec)!r}"
        ) from exc
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ConfigError(
            f"data.args.normalize: mean and std need {channels} values (one per channel, "
            f"std > 0), got mean {mean}, std {std}"
        )
    return Normalization(tuple(mean), tuple(std))


def _read_cache(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


class _Sums(Dataset):
    """Per-image channel sums, so workers decode and the main process only adds."""

    def __init__(self, reader: Reader, indices: list[int]) -> None:
        self.reader, self.indices = reader, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor, int, tuple[int, int]]:
        index = self.indices[i]
        x, size = self.reader(index)  # (C, H, W) in [0, 1]
        flat = x.double().reshape(x.shape[0], -1)  # (C, H*W)
        return index, flat.sum(1), flat.square().sum(1), flat.shape[1], size


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def _measure(
    reader: Reader,
    count: int,
    num_workers: int,
    seed: int,
    check_sizes: bool,
    names: Callable[[int], str],
) -> dict[str, Any]:
    if count > MAX_FILES:
        gen = torch.Generator().manual_seed(seed)
        indices = torch.randperm(count, generator=gen)[:MAX_FILES].sort().values.tolist()
    else:
        indices = list(range(count))
    loader = DataLoader(
        _Sums(reader, indices), batch_size=32, num_workers=num_workers, collate_fn=_as_list
    )
    total = total_sq = None
    pixels = 0
    sizes: dict[tuple[int, int], int] = {}  # a file size -> the first file index with it
    for chunk in loader:
        for index, s, sq, n, size in chunk:
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            pixels += n
            sizes.setdefault(tuple(size), index)
    if check_sizes and len(sizes) > 1:
        shown = ", ".join(f"{names(i)} is {h}x{w}" for (h, w), i in list(sizes.items())[:3])
        raise DataError(
            f"the train images differ in size ({shown}"
            f"{', ...' if len(sizes) > 3 else ''}: {len(sizes)} sizes); set data.args.size "
            "(one side, or [height, width]) so that every image is resized to one shape"
        )
    assert total is not None and total_sq is not None
    mean = total / pixels
    std = (total_sq / pixels - mean.square()).clamp_min(0).sqrt().clamp_min(STD_FLOOR)
    return {"mean": mean.tolist(), "std": std.tolist(), "images": len(indices)}
