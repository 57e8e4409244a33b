"""The one training loop every stage uses: ``fit``.

Per optimizer step it logs ``train/loss``, ``grad/norm``, ``lr``, ``time/data`` and
``time/compute``; every ``val_every`` steps it runs a forward pass on one random val
batch and logs ``val/loss`` and ``diag/output_spread`` (how much the output varies across
the inputs of that batch; ~0 means the model ignores its input).

``time/data`` is the wait for the train batch (and the val batch, fetched beside it) plus
the copy to the device; ``time/compute`` is the step and the val forward (CUDA events on
a GPU). At every flush it logs the chunk's ``time/steps_per_s`` and ``time/samples_per_s``
(wall clock, logging included) and peak memory (``mem/host_peak_mb``, and
``mem/device_peak_mb`` on CUDA): what ``judge.speed`` turns into each stage's speed report.

Device-side values are *not* copied to the host each step (that would sync the GPU):
they wait in ``_Pending`` and are copied out in one ``torch.stack(...).tolist()`` every
``flush_every`` steps, at the end, on failure and on interrupt. NaN detection runs at
those flushes, so a NaN stops training at most ``flush_every`` steps after it appeared,
with its exact step logged.

Everything else a stage does beside the loop is a ``Callback`` with two hooks: after a
step (full val metrics, pictures, a profiler, a signal) and at a flush (progress,
checkpoints, early stop, the time budget, an ablation's pruner). Either may end the fit
by returning a ``Stop`` with its ``StopReason``.
"""

from __future__ import annotations

import contextlib
import enum
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from dlsteps.data.batches import batch_size, described, to_device
from dlsteps.data.loading import Batch
from dlsteps.logbook.book import Logbook
from dlsteps.logbook.curves import Row
from dlsteps.train import memory
from dlsteps.train.steps import Evaluate, SupervisedEval, TrainStep


class StopReason(str, enum.Enum):
    """Why a fit ended; the value is what checkpoints and verdict figures record."""

    COMPLETED = "completed"  # every step of the stage ran
    EARLY_STOP = "early_stop"  # the overfit gate was met before the last step
    NAN_LOSS = "nan_loss"  # a non-finite train loss
    TIME_BUDGET = "time_budget"  # the stage's wall-time budget (gate.max_seconds)
    PRUNED = "stopped"  # an ablation's pruner: other variants were doing better
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM: the step in flight finished

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Stop:
    reason: StopReason
    message: str = ""


@dataclass(frozen=True)
class Progress:
    """The state of a fit at a flush, as callbacks see it."""

    step: int
    total: int
    train_loss: float
    val_loss: float | None
    elapsed: float
    train_losses: Sequence[float] = ()  # the train losses flushed just now, in step order


class Callback:
    """A hook into ``fit``; override what you need."""

    def wants_flush(self, step: int) -> bool:
        """Ask for a flush (and ``at_flush``) after ``step``, beside the loop's own
        ``flush_every`` schedule (a checkpoint every N steps)."""
        return False

    def after_step(self, step: int) -> Stop | None:
        """After step ``step``'s logging (its time counts neither as data nor compute)."""
        return None

    def at_flush(self, progress: Progress) -> Stop | None:
        """Right after a flush: the logbook holds every value up to ``progress.step``."""
        return None


class Source:
    """Anything with ``batches(start) -> Iterator[Batch]`` (``StepStream``, ``FixedBatch``)."""

    def batches(self, start: int = 0) -> Iterator[Batch]:  # pragma: no cover - protocol
        raise NotImplementedError


@dataclass
class FitSetup:
    model: nn.Module
    step: TrainStep
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    loss_fn: nn.Module
    train: Source
    val: Source
    total_steps: int
    device: torch.device
    autocast: contextlib.AbstractContextManager = field(default_factory=contextlib.nullcontext)
    val_every: int = 1
    flush_every: int = 25
    callbacks: list[Callback] = field(default_factory=list)
    # the val forward (batch -> val loss, output spread); None: the model and ``loss_fn``
    evaluate: Evaluate | None = None


class StepFailed(Exception):
    """The user's model, loss, step or data raised inside the loop: ``step`` and ``phase``
    say where, ``shapes`` what the batch was (inputs and targets of an ``(input, target)``
    batch, else the whole batch and None); the original exception is the ``__cause__``."""

    def __init__(self, step: int, phase: str, batch: Batch) -> None:
        super().__init__(f"step {step} ({phase})")
        self.step, self.phase = step, phase
        pair = isinstance(batch, tuple | list) and len(batch) == 2
        self.shapes: tuple[str, str | None] = (
            (described(batch[0]), described(batch[1])) if pair else (described(batch), None)
        )


class OutOfMemory(StepFailed):
    """The step's allocation was refused; ``fits`` is the largest halved batch size that
    ran (``None``: not even one sample), ``size`` the batch size that did not."""

    def __init__(self, step: int, phase: str, batch: Batch, fits: int | None) -> None:
        super().__init__(step, phase, batch)
        self.size, self.fits = batch_size(batch), fits


def _failed(
    s: FitSetup, step: int, phase: str, batch: Batch, exc: Exception, evaluate: Evaluate
) -> StepFailed:
    """What the loop raises when the user's step raised ``exc``: a refused allocation is
    probed for the batch size that fits before the stage stops. A train step is probed
    with its loss and backward (``step.loss``, without the update); a step that has no
    separate loss (the adversarial stage's) and a val batch with the val forward."""
    if not memory.is_out_of_memory(exc):
        return StepFailed(step, phase, batch)
    memory.release(exc)
    loss = getattr(s.step, "loss", None) if phase == "train step" else None
    if loss is not None:
        fits = memory.fitting_batch(s.model, batch, loss, backward=True)
    else:
        fits = memory.fitting_batch(s.model, batch, lambda b: evaluate(b)[0], backward=False)
    return OutOfMemory(step, phase, batch, fits)


@dataclass
class FitResult:
    last_step: int
    reason: StopReason
    seconds: float
    nan_step: int | None = None  # the first non-finite train loss (reason NAN_LOSS)
    message: str = ""  # what the callback that stopped the fit said


class _Pending:
    """Rows whose values may still live on the device; flushed in one host copy."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.tags: list[str] = []
        self.tensors: list[torch.Tensor] = []
        self.host: list[Row] = []

    def add(self, step: int, tag: str, value: torch.Tensor) -> None:
        self.steps.append(step)
        self.tags.append(tag)
        self.tensors.append(value.detach().float().reshape(()))

    def add_host(self, step: int, tag: str, value: float) -> None:
        self.host.append(Row(step, tag, value))

    def drain(self) -> list[Row]:
        values = torch.stack(self.tensors).tolist() if self.tensors else []  # the one sync
        rows = [Row(s, t, v) for s, t, v in zip(self.steps, self.tags, values, strict=True)]
        rows.extend(self.host)
        rows.sort(key=lambda r: r.step)
        self.steps, self.tags, self.tensors, self.host = [], [], [], []
        return rows


class _Timer:
    """Compute time per step: wall clock on CPU; CUDA events (read at flush) on GPU, so
    timing never adds a synchronisation to the step itself."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.events: list[tuple[int, torch.cuda.Event, torch.cuda.Event]] = []
        self._start: float | torch.cuda.Event = 0.0

    def start(self) -> None:
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def stop(self, step: int, pending: _Pending) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.events.append((step, self._start, end))
        else:
            pending.add_host(step, "time/compute", time.perf_counter() - self._start)

    def resolve(self, pending: _Pending) -> None:
        for step, start, end in self.events:
            end.synchronize()
            pending.add_host(step, "time/compute", start.elapsed_time(end) / 1000.0)
        self.events.clear()


class _ChunkMeter:
    """Throughput and peak memory, measured once per flush (never per step).

    ``time/steps_per_s`` and ``time/samples_per_s`` are wall-clock rates over the chunk of
    steps since the last flush, logging and flushing included; ``mem/host_peak_mb`` is the
    process's peak resident set and ``mem/device_peak_mb`` (CUDA) the peak of tensor memory
    allocated on the device since the stage began.
    """

    def __init__(self, device: torch.device, step: int) -> None:
        self.device = device if device.type == "cuda" else None
        if self.device is not None:
            torch.cuda.reset_peak_memory_stats(self.device)
        self.t0, self.step0, self.samples = time.perf_counter(), step, 0

    def rows(self, step: int) -> list[Row]:
        if step == self.step0:  # a second flush at the same step
            return []
        now = time.perf_counter()
        seconds = max(now - self.t0, 1e-9)
        rows = [
            Row(step, "time/steps_per_s", (step - self.step0) / seconds),
            Row(step, "time/samples_per_s", self.samples / seconds),
        ]
        if (rss := _host_peak_mb()) is not None:
            rows.append(Row(step, "mem/host_peak_mb", rss))
        if self.device is not None:
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            rows.append(Row(step, "mem/device_peak_mb", peak))
        self.t0, self.step0, self.samples = now, step, 0
        return rows


def _host_peak_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def fit(setup: FitSetup, logbook: Logbook, start_step: int = 0, val_start: int = 0) -> FitResult:
    """Train from ``start_step`` (steps already done) to ``total_steps``; log every value."""
    s = setup
    model, device, autocast = s.model, s.device, s.autocast
    train_it = s.train.batches(start_step)
    val_it = s.val.batches(val_start)
    pending, timer = _Pending(), _Timer(device)
    last_train: float | None = None
    last_val: float | None = None
    started = time.perf_counter()
    step = start_step
    meter = _ChunkMeter(device, step)
    evaluate = s.evaluate or SupervisedEval(model, s.loss_fn, autocast)
    model.train()

    def flush() -> FitResult | None:
        """Drain, write, look for a NaN, then let the callbacks see the flushed state."""
        nonlocal last_train, last_val
        timer.resolve(pending)
        rows = pending.drain()  # on CUDA this waits for the chunk, so the meter reads after it
        rows += meter.rows(step)
        logbook.write(rows)
        train_losses = []
        for row in rows:
            if row.tag == "train/loss":
                if not math.isfinite(row.value):
                    logbook.flush()
                    # the model trained on to this flush: that is its state (and last step)
                    return _end(step, StopReason.NAN_LOSS, started, nan_step=row.step)
                train_losses.append(row.value)
                last_train = row.value
            elif row.tag == "val/loss":
                last_val = row.value
        logbook.flush()
        if last_train is None:
            return None
        progress = Progress(
            step, s.total_steps, last_train, last_val, time.perf_counter() - started, train_losses
        )
        for callback in s.callbacks:
            if (stop := callback.at_flush(progress)) is not None:
                return _end(step, stop.reason, started, message=stop.message)
        return None

    try:
        t_wait = time.perf_counter()
        while step < s.total_steps:
            batch = next(train_it)
            validate = (step + 1) % s.val_every == 0
            if validate:  # fetched here so that waiting for it counts as data, not compute
                val_batch = to_device(next(val_it), device, non_blocking=True)
            batch = to_device(batch, device, non_blocking=True)
            step += 1
            meter.samples += batch_size(batch)
            pending.add_host(step, "time/data", time.perf_counter() - t_wait)
            timer.start()
            try:
                loss, norm, extra = s.step(batch)
            except Exception as exc:
                raise _failed(s, step, "train step", batch, exc, evaluate) from exc
            pending.add_host(step, "lr", s.optimizer.param_groups[0]["lr"])
            if s.scheduler is not None:
                s.scheduler.step()
            pending.add(step, "train/loss", loss)
            pending.add(step, "grad/norm", norm)
            for tag, value in extra.items():
                pending.add(step, tag, value)
            if validate:
                try:
                    vloss, spread, val_extra = evaluate(val_batch)
                except Exception as exc:
                    raise _failed(s, step, "val batch", val_batch, exc, evaluate) from exc
                pending.add(step, "val/loss", vloss)
                if spread is not None:
                    pending.add(step, "diag/output_spread", spread)
                for tag, value in val_extra.items():
                    pending.add(step, tag, value)
            timer.stop(step, pending)
            due = step % s.flush_every == 0 or step == s.total_steps
            if (due or any(cb.wants_flush(step) for cb in s.callbacks)) and (
                result := flush()
            ) is not None:
                return result
            for callback in s.callbacks:
                if (stop := callback.after_step(step)) is not None:
                    return _end(step, stop.reason, started, message=stop.message)
            t_wait = time.perf_counter()
    finally:
        # whatever ends the loop (interrupt, a crash in user code), what was measured is kept
        failing = sys.exc_info()[1] is not None
        try:
            if pending.tensors or pending.host:
                timer.resolve(pending)
                logbook.write(pending.drain())
            logbook.flush()
        except Exception:
            if not failing:
                raise
            # a broken device cannot give its values back; the error that broke it matters more
    return _end(step, StopReason.COMPLETED, started)


def _end(step: int, reason: StopReason, started: float, **kw: object) -> FitResult:
    return FitResult(step, reason, time.perf_counter() - started, **kw)  # type: ignore[arg-type]


def make_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if device.type != "cuda" or precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)
