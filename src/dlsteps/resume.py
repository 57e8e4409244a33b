"""``dlsteps run --resume RUN_DIR``: finished stages are kept, the others continue.

A stage that ended (passed, failed, skipped) keeps its summary entry and verdict. A stage
that was interrupted, crashed (``kill -9``: its entry still says ``running``) or stopped
on an error continues from its ``checkpoint.pt`` at the exact next step; its logbook is
first cut back to that step (JSONL rewritten, TensorBoard told by ``purge_step``), so no
step is logged twice and none is missing. With no checkpoint it starts again from step 0.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from dlsteps import checkpoint
from dlsteps.diagnoses import Diagnosis
from dlsteps.engine import FitResult, FitSetup
from dlsteps.engine import fit as fit_engine
from dlsteps.errors import UserError
from dlsteps.gates import Verdict
from dlsteps.interrupts import Interrupted
from dlsteps.logbook import Logbook, discard, read_curves, truncate

FINISHED = ("passed", "failed", "skipped")
CHECKPOINT = "checkpoint.pt"


def open_run(run_dir: Path, digest: str) -> dict[str, Any]:
    """The summary of the run to resume; refuses a directory that is not one, or one made
    with another config (``digest`` is ``checkpoint.config_hash`` of this config)."""
    path = run_dir / "summary.json"
    if not path.is_file():
        raise UserError(f"--resume {run_dir}: no summary.json there; is it a dlsteps run?")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"--resume {run_dir}: summary.json is not valid JSON ({exc})") from exc
    stored = summary.get("config_hash")
    if stored is None:
        raise UserError(f"--resume {run_dir}: the run records no config hash; start a new run")
    if stored != digest:
        raise UserError(
            f"--resume {run_dir}: the run was made with another config (hash {stored}, this "
            f"config {digest}); resume with the run's own config (leave CONFIG out to use "
            f"{run_dir / 'config.yaml'}), or start a new run"
        )
    return summary


def finished_entries(summary: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Stage → summary entry, for the stages the earlier attempt ended."""
    if summary is None:
        return {}
    return {e["name"]: e for e in summary.get("stages", []) if e.get("status") in FINISHED}


def stored_verdict(stage_dir: Path, entry: dict[str, Any]) -> Verdict:
    """The verdict of a finished stage, from its ``verdict.json`` (the summary entry when a
    stage, like a skipped one, wrote none)."""
    path = stage_dir / "verdict.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else entry
    return Verdict(
        data["status"],
        [Diagnosis.from_json(d) for d in data.get("diagnoses", [])],
        dict(data.get("figures", {})),
    )


class StageCheckpoints:
    """The checkpoints of one training stage: periodic (every N steps via the engine's
    ``on_checkpoint``, every M minutes via ``at_flush``), at an interrupt, and final."""

    def __init__(
        self,
        stage_dir: Path,
        stage: str,
        digest: str,
        live: checkpoint.Trainables,
        *,
        val_every: int,
        minutes: float,
    ) -> None:
        self.path = stage_dir / CHECKPOINT
        self.stage_dir, self.stage, self.digest, self.live = stage_dir, stage, digest, live
        self.val_every, self.interval = val_every, minutes * 60.0
        self.seconds_before = 0.0
        self.started = self.last_saved = time.perf_counter()

    def continue_from(self) -> dict[str, Any] | None:
        """Restore the checkpoint to continue from (the RNG waits for ``fit``) and cut the
        logbook back to its step; with none, clear the logbook of an attempt that died
        before its first checkpoint."""
        if not self.path.is_file():
            discard(self.stage_dir)
            return None
        state = checkpoint.load(self.path, self.digest)
        truncate(self.stage_dir, state["step"])
        checkpoint.restore(self.live, state, rng=False)
        self.seconds_before = float(state["seconds"])
        return state

    def save(self, step: int, finished: str | None = None) -> None:
        now = time.perf_counter()
        state = checkpoint.capture(
            self.live,
            stage=self.stage,
            step=step,
            val_batch=step // self.val_every,
            config=self.digest,
            finished=finished,
            seconds=self.seconds_before + now - self.started,
        )
        checkpoint.save(self.path, state)
        self.last_saved = now

    def at_flush(self, step: int) -> None:
        """Called right after a logbook flush, when the state is that of ``step``."""
        if self.interval > 0 and time.perf_counter() - self.last_saved >= self.interval:
            self.save(step)

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
        return FitResult(point["step"], point["finished"], 0.0)
    checkpoint.set_rng_state(point["rng"])
    return fit_engine(
        setup, logbook, start_step=point["step"], val_start=point["data"]["val_batch"]
    )


def primed(
    stop_check: Callable[[deque], bool] | None, stage_dir: Path, window: int
) -> Callable[[deque], bool] | None:
    """An early-stop check that also sees the train losses logged before the checkpoint,
    so a resumed overfit stage stops at the step the uninterrupted one would."""
    if stop_check is None:
        return None
    tail = read_curves(stage_dir).get_curve("train/loss").values[-window:].tolist()

    def check(recent: deque) -> bool:
        return stop_check(deque([*tail, *recent], maxlen=window))

    return check


def stamp() -> str:
    return datetime.now().isoformat(timespec="seconds")
