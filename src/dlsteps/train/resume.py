"""Checkpoints of a training stage, and continuing one at the exact next step.

A stage that was interrupted, crashed (``kill -9``: its summary entry still says
``running``) or stopped on an error continues from its ``checkpoint.pt``; its logbook is
first cut back to that step (JSONL rewritten, TensorBoard told by ``purge_step``), so no
step is logged twice and none is missing. With no checkpoint it starts again from step 0.
"""

from __future__ import annotations

import time
from typing import Any

from dlsteps.logbook.book import Logbook
from dlsteps.rundir.run import StageDir
from dlsteps.train import checkpoint
from dlsteps.train.engine import Callback, FitResult, FitSetup, Progress, Stop, StopReason
from dlsteps.train.engine import fit as fit_engine
from dlsteps.train.interrupts import Interrupted


class StageCheckpoints(Callback):
    """The checkpoints of one training stage: every ``every`` steps and every ``minutes``
    (both taken right after a flush, when the logbook and the state agree), at an
    interrupt, and final."""

    def __init__(
        self,
        stage: StageDir,
        digest: str,
        live: checkpoint.Trainables,
        *,
        val_every: int,
        minutes: float,
        every: int = 0,
    ) -> None:
        self.stage, self.digest, self.live = stage, digest, live
        self.val_every, self.interval, self.every = val_every, minutes * 60.0, every
        self.seconds_before = 0.0
        self.started = self.last_saved = time.perf_counter()

    def continue_from(self) -> dict[str, Any] | None:
        """Restore the checkpoint to continue from (the RNG waits for ``fit``) and cut the
        logbook back to its step; with none, clear the logbook of an attempt that died
        before its first checkpoint."""
        if not self.stage.checkpoint.is_file():
            self.stage.discard_logbook()
            return None
        state = checkpoint.load(self.stage.checkpoint, self.digest)
        self.stage.truncate_logbook(state["step"])
        checkpoint.restore(self.live, state, rng=False)
        self.seconds_before = float(state["seconds"])
        return state

    def save(self, step: int, finished: StopReason | None = None) -> None:
        now = time.perf_counter()
        state = checkpoint.capture(
            self.live,
            stage=self.stage.name,
            step=step,
            val_batch=step // self.val_every,
            config=self.digest,
            finished=finished.value if finished is not None else None,
            seconds=self.seconds_before + now - self.started,
        )
        checkpoint.save(self.stage, state)
        self.last_saved = now

    def wants_flush(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def at_flush(self, progress: Progress) -> Stop | None:
        periodic = self.wants_flush(progress.step)
        if periodic or (
            self.interval > 0 and time.perf_counter() - self.last_saved >= self.interval
        ):
            self.save(progress.step)
        return None

    def interrupted(self, step: int) -> Interrupted:
        """Save the state after ``step`` for ``--resume``; the caller raises the result."""
        self.save(step)
        return Interrupted(step)


def finished(point: dict[str, Any] | None) -> bool:
    """The final checkpoint was written before the kill: the stage only needs judging."""
    return point is not None and point["finished"] is not None


def fit(setup: FitSetup, logbook: Logbook, point: dict[str, Any] | None) -> FitResult:
    """``engine.fit`` from the start or from ``point``, whose RNG states are restored here,
    just before the first step: building the stage (val samples for pictures, a loader)
    may draw from the RNG, and the uninterrupted run drew that before its checkpoint."""
    if point is None:
        return fit_engine(setup, logbook)
    if finished(point):
        return FitResult(point["step"], StopReason(point["finished"]), 0.0)
    checkpoint.set_rng_state(point["rng"])
    return fit_engine(
        setup, logbook, start_step=point["step"], val_start=point["data"]["val_batch"]
    )
