"""Batches for the engine, addressable by step so a stage can resume at the exact batch.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so the batch of
any global step can be recomputed after a restart without replaying the loader; the
same sampler shards the order across DDP ranks.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from dlsteps.data.batches import to_device
from dlsteps.data.items import CheckedCollate, IndexedItems, collate_of

# ``(inputs, targets)`` for the task's own loss; any structure the collate returns for a
# config's own ``step`` (``data.batches``)
Batch = Any


class EpochSampler(Sampler[int]):
    """Seeded per-epoch order, sharded ``rank::world`` (padded so ranks stay in step)."""

    def __init__(
        self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1
    ) -> None:
        self.size, self.seed, self.shuffle, self.rank, self.world = size, seed, shuffle, rank, world
        self.per_rank = math.ceil(size / world)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Next iteration yields epoch ``epoch`` without its first ``skip`` samples."""
        self.epoch, self.skip = epoch, skip

    def order(self, epoch: int) -> torch.Tensor:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            idx = torch.randperm(self.size, generator=gen)
        else:
            idx = torch.arange(self.size)
        padded = self.per_rank * self.world
        if padded > self.size:
            idx = torch.cat([idx, idx[: padded - self.size]])
        return idx[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch)[self.skip :].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.skip


class StepStream:
    """An endless stream of batches over epochs; ``batches(start)`` begins at global batch
    ``start`` (0-based), which is how a resumed stage continues exactly where it stopped."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        *,
        shuffle: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool | None = None,
        rank: int = 0,
        world: int = 1,
        split: str = "train",
    ) -> None:
        self.sampler = EpochSampler(len(dataset), seed, shuffle, rank, world)
        self.batch_size = batch_size
        self.loader = DataLoader(
            IndexedItems(dataset),
            batch_size=batch_size,
            collate_fn=CheckedCollate(split, collate_of(dataset)),
            sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            # default on: a stream re-iterates its loader every epoch, and fresh workers
            # would each time start (and import the user's module) from scratch
            persistent_workers=num_workers > 0 and persistent_workers is not False,
            drop_last=False,
            worker_init_fn=ignore_in_worker,
        )

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.sampler.per_rank / self.batch_size)

    def indices(self, step: int) -> list[int]:
        """The data set indices of the batch of optimizer step ``step`` (1-based)."""
        epoch, offset = divmod(step - 1, self.steps_per_epoch)
        order = self.sampler.order(epoch)
        return order[offset * self.batch_size : (offset + 1) * self.batch_size].tolist()

    def batches(self, start: int = 0) -> Iterator[Batch]:
        epoch, offset = divmod(start, self.steps_per_epoch)
        while True:
            self.sampler.set_epoch(epoch, skip=offset * self.batch_size)
            # a fresh iterator draws its workers' base seed from this generator, not from the
            # global RNG, so a stage resumed mid-epoch leaves dropout's RNG stream unchanged
            self.loader.generator = torch.Generator().manual_seed(
                self.sampler.seed * 1_000_003 + epoch + 0x5DEECE66D
            )
            yield from self.loader
            epoch, offset = epoch + 1, 0


def workers(data: Any) -> int:
    """``data.num_workers`` of a config, or this machine's default when it is unset."""
    return data.num_workers if data.num_workers is not None else default_num_workers()


def default_num_workers() -> int:
    """``data.num_workers`` when the config leaves it unset, chosen from this machine.

    Without CUDA: 0. Training on the CPU, workers take cores from the compute, and
    in-memory data (the built-ins) loads fastest in the main process; a slow loader shows
    up as ``data_bound`` in the speed report, whose advice is to raise it. With CUDA: the
    cores of this process's share of the machine (per GPU) less one for the training
    loop, at most 8, so loading overlaps the GPU's work.
    """
    if not torch.cuda.is_available():
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(8, cores // torch.cuda.device_count() - 1))


class FixedBatch:
    """The overfit stages' source: the same few samples, read once, as one batch (moved to
    ``device`` once, so a step does not copy it again)."""

    def __init__(
        self, dataset: Dataset, indices: Sequence[int], device: torch.device | None = None
    ) -> None:
        loader = DataLoader(
            Subset(IndexedItems(dataset), list(indices)),
            batch_size=len(indices),
            collate_fn=CheckedCollate("train", collate_of(dataset)),
        )
        batch = next(iter(loader))
        self.batch: Batch = to_device(batch, device) if device is not None else batch
        self.batch_size = len(indices)
        self.steps_per_epoch = 1
        self.held = list(indices)

    def indices(self, step: int) -> list[int]:
        """The data set indices of every step's batch: always the same few."""
        return self.held

    def batches(self, start: int = 0) -> Iterator[Batch]:
        while True:
            yield self.batch


def pick_samples(size: int, count: int, seed: int) -> list[int]:
    """``count`` distinct train indices chosen by ``seed`` (the overfit stages' samples)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(size, generator=gen)[: min(count, size)].tolist()


def ignore_in_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoader workers: Ctrl-C reaches the whole process group,
    and a worker dying of it would kill the step the main process is finishing. Workers
    watch their parent and exit with it, so they can leave signals to the main process."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
