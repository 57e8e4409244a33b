"""Gates: a stage's curves → a verdict with diagnoses. Pure functions of logged data.

Nothing here touches a model: ``dlsteps report`` re-judges an old run from its logbook
alone, and each rule is tested on hand-made curves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlsteps.config import GateConfig
from dlsteps.diagnoses import Diagnosis, hint
from dlsteps.logbook import Curve, Curves

# A val batch whose outputs vary this little across inputs (relative to all variation)
# is treated as the model ignoring its input.
SPREAD_IGNORED = 0.02
DIVERGE_FACTOR = 3.0
NOT_DECREASING = 0.10  # less than 10% drop from start to end counts as "did not go down"
EXPLODING_NORM = 1e4
EXPLODING_GROWTH = 1e3
VANISHING_NORM = 1e-7


@dataclass
class Verdict:
    status: str  # passed | failed
    diagnoses: list[Diagnosis] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(d.severity == "fail" for d in self.diagnoses)


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each trailing window (shorter at the start); same length as ``values``."""
    if len(values) == 0:
        return values
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def overfit_reached(values: np.ndarray, window: int, threshold: float) -> int | None:
    """Index of the first batch whose trailing ``window``-mean is ≤ ``threshold``."""
    if len(values) < window:
        return None
    means = rolling_mean(values, window)[window - 1 :]
    hits = np.flatnonzero(means <= threshold)
    return int(hits[0]) + window - 1 if len(hits) else None


# --- rules shared by every training stage --------------------------------------------


def check_finite(train: Curve) -> Diagnosis | None:
    bad = np.flatnonzero(~np.isfinite(train.values))
    if not len(bad):
        return None
    step = int(train.steps[bad[0]])
    last_ok = train.values[: bad[0]]
    before = f" (last finite value {last_ok[-1]:.4g})" if len(last_ok) else ""
    return Diagnosis(
        "nan_loss",
        f"train loss became {train.values[bad[0]]} at step {step}{before}; training stopped "
        f"there and the logs up to it are kept. {hint('nan_loss')}",
        step=step,
    )


def check_diverging(train: Curve) -> Diagnosis | None:
    values = train.values[np.isfinite(train.values)]
    if len(values) < 4:
        return None
    k = max(1, min(10, len(values) // 10))
    start = float(np.median(values[:k]))
    smooth = rolling_mean(values, k)
    peak_i = int(np.argmax(smooth))
    end = float(smooth[-1])
    if smooth[peak_i] > DIVERGE_FACTOR * max(start, 1e-8) and end > start:
        return Diagnosis(
            "diverging",
            f"train loss rose from {start:.4g} to {smooth[peak_i]:.4g} (step "
            f"{int(train.steps[peak_i])}) and ended at {end:.4g}, above where it started. "
            f"{hint('diverging')}",
            step=int(train.steps[peak_i]),
        )
    return None


def check_gradients(grad: Curve, train_improved: bool) -> Diagnosis | None:
    if not len(grad):
        return None
    values = grad.values
    finite = values[np.isfinite(values)]
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        step = int(grad.steps[bad[0]])
        return Diagnosis(
            "exploding_gradient",
            f"gradient norm became {values[bad[0]]} at step {step}. {hint('exploding_gradient')}",
            step=step,
        )
    early = float(np.median(finite[: min(10, len(finite))]))
    peak_i = int(np.argmax(values))
    peak = float(values[peak_i])
    if peak > EXPLODING_NORM and peak > EXPLODING_GROWTH * max(early, 1e-12):
        return Diagnosis(
            "exploding_gradient",
            f"gradient norm reached {peak:.3g} at step {int(grad.steps[peak_i])}, "
            f"{peak / max(early, 1e-12):.0f}x its early median {early:.3g}. "
            f"{hint('exploding_gradient')}",
            step=int(grad.steps[peak_i]),
        )
    median = float(np.median(values))
    if median < VANISHING_NORM and not train_improved:
        return Diagnosis(
            "vanishing_gradient",
            f"median gradient norm is {median:.2e} while the loss did not improve. "
            f"{hint('vanishing_gradient')}",
            step=int(grad.steps[0]),
        )
    return None


def check_input_ignored(spread: Curve) -> Diagnosis | None:
    values = spread.values[np.isfinite(spread.values)]
    if len(values) < 3:
        return None
    tail = values[len(values) // 2 :]
    level = float(np.median(tail))
    if level < SPREAD_IGNORED:
        return Diagnosis(
            "input_ignored",
            f"predictions are nearly identical across different val inputs (spread "
            f"{level:.2e}, relative std across the batch, threshold {SPREAD_IGNORED}). "
            f"{hint('input_ignored')}",
            step=int(spread.steps[len(spread.steps) // 2]),
        )
    return None


def _loss_shape(train: Curve, window: int, threshold: float) -> Diagnosis:
    values = train.values
    k = min(window, len(values))
    start = float(np.mean(values[:k]))
    end = float(np.mean(values[-k:]))
    drop = 1.0 - end / start if start > 0 else 0.0
    step = int(train.steps[-1])
    if drop < NOT_DECREASING:
        return Diagnosis(
            "loss_not_decreasing",
            f"train loss went from {start:.4g} to {end:.4g} over {len(values)} steps "
            f"({drop:+.1%}); the gate needs <= {threshold:g}. {hint('loss_not_decreasing')}",
            step=step,
        )
    return Diagnosis(
        "loss_plateau",
        f"train loss fell from {start:.4g} but stalled at {end:.4g} (mean of the last {k} "
        f"batches) after {len(values)} steps; the gate needs <= {threshold:g}. "
        f"{hint('loss_plateau')}",
        step=step,
    )


# --- the stage gates -----------------------------------------------------------------


def _common(curves: Curves) -> tuple[list[Diagnosis], bool]:
    """NaN, divergence and gradient rules; returns (diagnoses, stop_here)."""
    train = curves.get_curve("train/loss")
    if (nan := check_finite(train)) is not None:
        return [nan], True
    found = [d for d in (check_diverging(train),) if d]
    improved = len(train) > 1 and train.values[-1] < train.values[0]
    if (grad := check_gradients(curves.get_curve("grad/norm"), improved)) is not None:
        found.append(grad)
    return found, bool(found)


def gate_overfit(
    stage: str, curves: Curves, gate: GateConfig, history: Mapping[str, Verdict]
) -> Verdict:
    train = curves.get_curve("train/loss")
    figures: dict[str, Any] = {"steps": len(train)}
    if not len(train):
        return Verdict("failed", [Diagnosis("loss_not_decreasing", "no train loss was logged")])
    found, stop = _common(curves)
    hit = overfit_reached(train.values, gate.window, gate.train_loss_below)
    figures["final_train_loss"] = float(np.mean(train.values[-gate.window :]))
    seconds = _stage_seconds(curves)
    figures["seconds_training"] = round(seconds, 3)
    if hit is not None and not stop:
        figures["reached_at_step"] = int(train.steps[hit])
        if gate.max_seconds is not None and seconds > gate.max_seconds:
            found.append(
                Diagnosis(
                    "slow_batch",
                    f"the loss reached {gate.train_loss_below:g} but the stage took "
                    f"{seconds:.0f} s, over its budget of {gate.max_seconds:.0f} s. "
                    f"{hint('slow_batch')}",
                    step=int(train.steps[-1]),
                )
            )
        return _verdict(found, figures)
    if not stop:
        spread = curves.get_curve("diag/output_spread")
        ignored = check_input_ignored(spread) if stage == "overfit-few" else None
        found.append(ignored or _loss_shape(train, gate.window, gate.train_loss_below))
    return _verdict(found, figures)


def gate_full_data(
    stage: str, curves: Curves, gate: GateConfig, history: Mapping[str, Verdict]
) -> Verdict:
    train, val = curves.get_curve("train/loss"), curves.get_curve("val/loss")
    found, stop = _common(curves)
    figures: dict[str, Any] = {"steps": len(train)}
    if len(train):
        figures["final_train_loss"] = float(np.mean(train.values[-gate.window :]))
    if stop or not len(val):
        if not len(val) and not stop:
            found.append(Diagnosis("no_generalization", "no val loss was logged"))
        return _verdict(found, figures)
    smooth = rolling_mean(val.values, gate.val_smooth)
    first = float(np.median(val.values[: min(3, len(val))]))
    best_i = int(np.nanargmin(smooth))
    best = float(smooth[best_i])
    figures.update(first_val_loss=first, best_val_loss=best, best_val_step=int(val.steps[best_i]))
    if best > first * (1 - gate.min_val_improvement):
        found.append(
            Diagnosis(
                "no_generalization",
                f"best smoothed val loss {best:.4g} is not {gate.min_val_improvement:.0%} below "
                f"the first val loss {first:.4g}. {hint('no_generalization')}",
                step=int(val.steps[best_i]),
            )
        )
    baseline = curves.get_curve("baseline/val_loss")
    if len(baseline) and gate.beat_baseline:
        base = float(baseline.values[0])
        figures["baseline_val_loss"] = base
        if best >= base:
            found.append(
                Diagnosis(
                    "worse_than_baseline",
                    f"best smoothed val loss {best:.4g} is not below {base:.4g}, the loss of "
                    f"predicting the train label distribution/mean for every input. "
                    f"{hint('worse_than_baseline')}",
                    step=int(val.steps[best_i]),
                )
            )
    if (ign := check_input_ignored(curves.get_curve("diag/output_spread"))) is not None:
        found.append(ign)
    found.extend(check_speed(curves, gate))
    if (over := check_overfitting(train, val, smooth, best_i)) is not None:
        found.append(over)
    return _verdict(found, figures)


def check_speed(curves: Curves, gate: GateConfig) -> list[Diagnosis]:
    data, compute = curves.get_curve("time/data"), curves.get_curve("time/compute")
    n = min(len(data), len(compute))
    if not n:
        return []
    step_time = data.values[:n] + compute.values[:n]
    median = float(np.median(step_time))
    data_share = float(np.median(data.values[:n]) / max(median, 1e-12))
    slow = median > gate.max_batch_seconds
    found = []
    if data_share > 0.5:
        found.append(
            Diagnosis(
                "data_bound",
                f"waiting for data takes {data_share:.0%} of each step (median "
                f"{np.median(data.values[:n]) * 1e3:.1f} ms of {median * 1e3:.1f} ms). "
                f"{hint('data_bound')}",
                severity="fail" if slow else "warn",
                step=int(data.steps[0]),
            )
        )
    if slow:
        found.append(
            Diagnosis(
                "slow_batch",
                f"median batch takes {median:.2f} s, over max_batch_seconds "
                f"{gate.max_batch_seconds:g}. {hint('slow_batch')}",
                step=int(data.steps[0]),
            )
        )
    return found


def check_overfitting(
    train: Curve, val: Curve, val_smooth: np.ndarray, best_i: int
) -> Diagnosis | None:
    if len(val) < 10 or best_i > 0.8 * len(val):
        return None
    rise = val_smooth[-1] / max(val_smooth[best_i], 1e-12) - 1
    k = max(1, len(train) // 5)
    train_fell = np.mean(train.values[-k:]) < np.mean(train.values[-2 * k : -k])
    if rise > 0.1 and train_fell:
        return Diagnosis(
            "overfitting",
            f"val loss rose {rise:.0%} above its best ({val_smooth[best_i]:.4g} at step "
            f"{int(val.steps[best_i])}) while train loss kept falling. {hint('overfitting')}",
            severity="warn",
            step=int(val.steps[best_i]),
        )
    return None


def _stage_seconds(curves: Curves) -> float:
    return float(
        curves.get_curve("time/data").values.sum() + curves.get_curve("time/compute").values.sum()
    )


def _verdict(found: list[Diagnosis], figures: dict[str, Any]) -> Verdict:
    status = "failed" if any(d.severity == "fail" for d in found) else "passed"
    return Verdict(status, found, figures)


Gate = Callable[[str, Curves, GateConfig, Mapping[str, Verdict]], Verdict]
GATES: dict[str, Gate] = {
    "overfit-one": gate_overfit,
    "overfit-few": gate_overfit,
    "full-data": gate_full_data,
}


def judge(
    stage: str, curves: Curves, gate: GateConfig, history: Mapping[str, Verdict] | None = None
) -> Verdict:
    """The verdict of a training stage from its curves (and earlier stages' verdicts)."""
    return GATES[stage](stage, curves, gate, history or {})
