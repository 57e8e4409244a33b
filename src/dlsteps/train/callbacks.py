"""The small callbacks a stage hands to ``engine.fit``: each one does one thing.

Checkpointing lives with the checkpoints (``train.resume.StageCheckpoints``), the
metric passes and pictures with the observer (``observe``); these are the rest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from dlsteps.train.engine import Callback, Progress, Stop, StopReason


class EarlyStop(Callback):
    """Stop once ``met(the last window train losses)`` holds: an overfit stage ends as soon
    as its gate's own rule is met. ``primed`` holds the losses logged before a resume, so a
    resumed stage stops at the step the uninterrupted one would."""

    def __init__(
        self, window: int, met: Callable[[Sequence[float]], bool], primed: Sequence[float] = ()
    ) -> None:
        self.recent: deque[float] = deque(primed, maxlen=window)
        self.met = met

    def at_flush(self, progress: Progress) -> Stop | None:
        self.recent.extend(progress.train_losses)
        return Stop(StopReason.EARLY_STOP) if self.met(list(self.recent)) else None


class TimeBudget(Callback):
    """The stage's wall-time budget (``gate.max_seconds``), checked at flushes."""

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds

    def at_flush(self, progress: Progress) -> Stop | None:
        if progress.elapsed > self.max_seconds:
            return Stop(StopReason.TIME_BUDGET, f"{self.max_seconds:g} s")
        return None


class Interrupt(Callback):
    """SIGINT/SIGTERM (``interrupts.StopFlag``): read once per step; the step in flight has
    finished, so the checkpoint taken next is consistent."""

    def __init__(self, requested: Callable[[], bool]) -> None:
        self.requested = requested

    def after_step(self, step: int) -> Stop | None:
        return Stop(StopReason.INTERRUPTED) if self.requested() else None


class Periodic(Callback):
    """``fn(step)`` after every ``every``-th step (full val metrics, pictures, a profiler)."""

    def __init__(self, every: int, fn: Callable[[int], None]) -> None:
        self.every, self.fn = every, fn

    def after_step(self, step: int) -> Stop | None:
        if step % self.every == 0:
            self.fn(step)
        return None


class AtFlush(Callback):
    """``fn(progress)`` at every flush; a returned text stops the fit as ``reason`` with that
    message (an ablation's pruner: ``StopReason.PRUNED``)."""

    def __init__(
        self, fn: Callable[[Progress], str | None], reason: StopReason = StopReason.PRUNED
    ) -> None:
        self.fn, self.reason = fn, reason

    def at_flush(self, progress: Progress) -> Stop | None:
        message = self.fn(progress)
        return Stop(self.reason, message) if message else None
