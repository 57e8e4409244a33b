"""Several processes (GPUs, or CPU cores for testing) with PyTorch's own DDP.

One machine::

    dlsteps run configs/seg.yaml --nproc 4          # launches through torch.distributed.run
    torchrun --nproc-per-node 4 -m dlsteps run configs/seg.yaml   # the same, by hand

Several machines: the same launcher on each node, meeting at one rendezvous endpoint
(the run directory should be on a file system every node sees, for ``init_from``)::

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint node0.example:29500 --rdzv-id seg1 \\
        -m dlsteps run configs/seg.yaml --run-dir /shared/runs/seg1

Semantics: ``data.batch_size`` stays the *global* batch, so a stage's steps, learning
rate and curves mean the same with 1 or N processes; each rank reads ``batch_size / N``
samples of every global batch (``EpochSampler`` shards each epoch's order ``rank::N``,
the ``DistributedSampler`` scheme). DDP averages the gradients; the logged train and val
losses are averaged over ranks, so rank 0's logbook holds the global values. Only rank 0
writes anything (run directory, logbook, checkpoints, summary, console); rank 0 judges
each gate and sends the verdict to the others, so every rank stops at the same stage.
Backend: ``nccl`` on GPUs, ``gloo`` on CPU.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dlsteps.errors import EXIT_INTERRUPTED, ConfigError
from dlsteps.train.engine import Callback, FitSetup, Progress, Stop, StopReason
from dlsteps.train.world import is_main, world

T = TypeVar("T")


def init(device: torch.device) -> torch.device:
    """Join the process group torchrun prepared; returns this rank's device (``cuda:<local
    rank>`` on GPUs). A no-op in a single process."""
    w = world()
    if w.size == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", w.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank (a verdict, a run directory): decided once."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def once(decide: Callable[[], T]) -> T:
    """``decide()`` on rank 0 only, its result on every rank (a gate's verdict)."""
    return from_main(decide() if is_main() else None)  # type: ignore[arg-type]


def per_rank_batch(batch_size: int, key: str) -> int:
    """The share of one global batch each rank reads."""
    size = world().size if active() else 1
    if batch_size % size:
        raise ConfigError(
            f"{key}: {batch_size} is not divisible by the {size} processes; it is the global "
            f"batch, split evenly across them"
        )
    return batch_size // size


def shard() -> dict[str, int]:
    """``rank``/``world`` keyword arguments for a ``StepStream``."""
    w = world()
    return {"rank": w.rank, "world": w.size} if active() else {"rank": 0, "world": 1}


def describe(device: torch.device) -> str:
    """One line for the stage notes: how the step is spread."""
    size = dist.get_world_size()
    return (
        f"DDP over {size} processes ({dist.get_backend()} on {device.type}); "
        f"each reads 1/{size} of every global batch"
    )


def adapt(setup: FitSetup) -> FitSetup:
    """The engine's ``FitSetup`` for one rank of several: losses averaged over ranks before
    they are logged, and every stop taken at a flush (time budget, early stop, a pruner)
    agreed by all ranks, so none is left waiting in a collective."""
    return replace(
        setup,
        step=MeanLossStep(setup.step),
        loss_fn=MeanLoss(setup.loss_fn),
        callbacks=[AgreedStops(setup.callbacks)],
    )


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP around ``model`` (which keeps its own parameters, so its checkpoints carry no
    ``module.`` prefix). DDP broadcasts rank 0's weights at construction, so only rank 0
    needs an ``init_from`` checkpoint. On GPUs batchnorm becomes ``SyncBatchNorm`` so the
    statistics cover the global batch (gloo on CPU has no SyncBatchNorm)."""
    if not active():
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def _comm_device() -> torch.device:
    """Where a tensor must live for a collective: nccl reduces only CUDA tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _mean(value: torch.Tensor) -> torch.Tensor:
    out = value.detach().clone()
    dist.all_reduce(out)  # gloo has no AVG: sum, then divide
    return out / dist.get_world_size()


class MeanLossStep:
    """A train step whose returned loss is the mean over ranks (what rank 0 logs); the
    gradients are already averaged by DDP inside the wrapped step."""

    def __init__(self, step: Callable[..., Any]) -> None:
        self.step = step

    def __call__(self, batch: Any) -> Any:
        loss, norm, extra = self.step(batch)
        return _mean(loss), norm, extra

    @property
    def loss(self) -> Callable[[Any], torch.Tensor] | None:
        """The wrapped step's loss without the update, where it has one (the probe of a
        refused allocation)."""
        return getattr(self.step, "loss", None)


class MeanLoss(nn.Module):
    """The val loss averaged over ranks (each rank scores its share of the val batch)."""

    def __init__(self, loss_fn: nn.Module) -> None:
        super().__init__()
        self.loss_fn = loss_fn

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _mean(self.loss_fn(out, target))


# A stop at a flush as one number, so ranks agree by a MAX all-reduce: the strongest wins.
_STOP_CODES = [None, StopReason.TIME_BUDGET, StopReason.EARLY_STOP, StopReason.PRUNED]


class AgreedStops(Callback):
    """``callbacks`` as one: their ``at_flush`` stops decided by all ranks together (clocks
    differ per rank, and a pruner may answer on one rank only), so every rank stops at the
    same step. ``after_step`` (a signal, pictures) stays per rank."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def wants_flush(self, step: int) -> bool:
        return any(cb.wants_flush(step) for cb in self.callbacks)

    def after_step(self, step: int) -> Stop | None:
        for callback in self.callbacks:
            if (stop := callback.after_step(step)) is not None:
                return stop
        return None

    def at_flush(self, progress: Progress) -> Stop | None:
        local = None
        for callback in self.callbacks:
            if (local := callback.at_flush(progress)) is not None:
                break
        if not active():
            return local
        code = _STOP_CODES.index(local.reason) if local is not None else 0
        flag = torch.tensor([code], device=_comm_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        agreed = _STOP_CODES[int(flag.item())]
        if agreed is None:
            return None
        if local is not None and local.reason == agreed:
            return local
        return Stop(agreed, "stopped on another rank")


def _exit_code(codes: dict[int, int]) -> int:
    """Rank 0's own exit code; when torchrun killed rank 0 because another rank failed
    first, that rank's code; a process killed by a signal counts as interrupted."""
    answers = [c for _, c in sorted(codes.items()) if c > 0]  # rank 0 first
    if answers:
        return answers[0]
    signals = [-c for c in codes.values()]
    return EXIT_INTERRUPTED if set(signals) & {signal.SIGINT, signal.SIGTERM} else 128 + signals[0]


def launch(nproc: int, dlsteps_args: Sequence[str]) -> int:
    """Run ``dlsteps <dlsteps_args>`` in ``nproc`` local processes through
    ``torch.distributed.run`` (torchrun's own code); returns rank 0's exit code, so the
    documented codes (1 gate failed, 2 bad input, 130 interrupted) survive the launcher."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun.parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "dlsteps", *dlsteps_args]
    )
    # torchrun's own default (one thread per process), set here without its banner
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # torchrun logs every worker that exits non-zero; a failed gate is an answer, not a crash
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        torchrun.run(args)
    except ChildFailedError as exc:
        return _exit_code({rank: f.exitcode for rank, f in exc.failures.items()})
    except (KeyboardInterrupt, SignalException):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
