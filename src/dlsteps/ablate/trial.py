"""One trial: one variant of the config, one stage, an ordinary run directory.

The pruner sees the trial through an engine callback at every flush (``RunOptions.callbacks``,
called right after each logbook flush): the hook reads the new rows of the stage's
``scalars.jsonl``, reports the best smoothed value of the compared metric so far at that
step, and asks the pruner. A "prune" answer becomes the hook's stop reason; the runner
then records the stage as ``pruned`` with that step and reason, and keeps every log.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from dlsteps.ablate.space import Params, fixed, suggest, variant_config
from dlsteps.ablate.study import StudySpec
from dlsteps.errors import UserError
from dlsteps.judge.rules import rolling_mean
from dlsteps.ladder.runner import RunOptions, run_ladder
from dlsteps.logbook.curves import read_curves
from dlsteps.rundir.layout import SCALARS_JSONL
from dlsteps.train.callbacks import AtFlush
from dlsteps.train.engine import Progress

TRIALS_DIR = "trials"


class RungReporter:
    """Progress hook: the metric's best trailing-mean value so far → ``trial.report``;
    returns a stop reason when the pruner says the trial is behind."""

    def __init__(self, trial: optuna.Trial, spec: StudySpec, scalars: Path) -> None:
        self.trial, self.spec, self.path = trial, spec, scalars
        self.values: list[float] = []
        self._offset = 0
        self._reported = 0  # last step reported (a step may flush twice: checkpoints)

    def __call__(self, p: Progress) -> str | None:
        value = self.best()
        if value is None or p.step <= self._reported:
            return None
        self._reported = p.step
        self.trial.report(value, p.step)
        # a trial at its last step has spent its compute: judge it, do not "prune" it
        if p.step < p.total and self.trial.should_prune():
            return (
                f"{self.spec.pruner['name']} pruner: best smoothed {self.spec.metric} "
                f"{value:.4g} at step {p.step} is behind the other trials there"
            )
        return None

    def best(self) -> float | None:
        """Best value of the metric's trailing mean (``smooth`` points) logged so far."""
        self._read_new_rows()
        if not self.values:
            return None
        # full windows only: the shorter ones at the start would let one lucky val batch
        # (or the loss at init, before a spike) stand for the trial's level
        window = min(self.spec.smooth, len(self.values))
        smooth = rolling_mean(np.asarray(self.values), window)[window - 1 :]
        smooth = smooth[np.isfinite(smooth)]
        if not len(smooth):
            return None
        return float(smooth.max() if self.spec.maximize else smooth.min())

    def _read_new_rows(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for next time
        self._offset += len(complete)
        for line in complete.splitlines():
            row = json.loads(line)
            if row["tag"] == self.spec.metric:
                self.values.append(float(row["value"]))


@dataclass
class Outcome:
    number: int
    state: str  # complete | pruned | failed | interrupted
    params: Params
    value: float | None
    steps: int
    run_dir: Path
    note: str = ""


def run_trial(trial: optuna.Trial, spec: StudySpec, out_dir: Path, device: str | None) -> Outcome:
    """Train the trial's variant and tell the study how it ended."""
    params = fixed(trial, spec.grid) if spec.grid else suggest(trial, spec.search)
    run_dir = out_dir / TRIALS_DIR / f"{trial.number:03d}"
    trial.set_user_attr("run_dir", str(run_dir))
    hook = RungReporter(trial, spec, run_dir / spec.stage / SCALARS_JSONL)
    opts = RunOptions(
        only=[spec.stage], run_dir=run_dir, device=device, quiet=True, callbacks=[AtFlush(hook)]
    )
    try:
        summary, _ = run_ladder(variant_config(spec.config, params, spec.source), opts)
    except UserError as exc:
        return _finish(trial, params, run_dir, spec, "failed", None, note=str(exc))
    entry: dict[str, Any] = summary["stages"][-1]
    status = entry["status"]
    trial.set_user_attr("gate", status)
    codes = [d["code"] for d in entry.get("diagnoses", []) if d.get("severity") == "fail"]
    if codes:
        trial.set_user_attr("diagnoses", codes)
    if status == "interrupted":
        return _finish(trial, params, run_dir, spec, "interrupted", None, note="interrupted")
    if status == "pruned":
        reason = next((n for n in entry.get("notes", []) if n.startswith("pruned")), "pruned")
        trial.set_user_attr("pruned_at_step", entry["figures"]["pruned_at_step"])
        return _finish(trial, params, run_dir, spec, "pruned", hook.best(), note=reason)
    value = hook.best()
    if value is None:
        note = f"no finite {spec.metric} was logged"
        return _finish(trial, params, run_dir, spec, "failed", None, note=note)
    return _finish(trial, params, run_dir, spec, "complete", value)


_STATES = {
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "failed": TrialState.FAIL,
    "interrupted": TrialState.FAIL,  # with an "interrupted" attr: --resume runs it again
}


def _finish(
    trial: optuna.Trial,
    params: Params,
    run_dir: Path,
    spec: StudySpec,
    state: str,
    value: float | None,
    note: str = "",
) -> Outcome:
    steps = len(read_curves(run_dir / spec.stage).get_curve("train/loss"))
    trial.set_user_attr("steps", steps)
    if note:
        trial.set_user_attr("interrupted" if state == "interrupted" else "note", note)
    if value is not None and math.isfinite(value):
        trial.set_user_attr("best", value)
    trial.study.tell(trial, value if state == "complete" else None, state=_STATES[state])
    return Outcome(trial.number, state, params, value, steps, run_dir, note)
