"""The stage gates: one function per kind of stage, ``(curves, gate, history) -> Verdict``.

Each reads only the stage's logged curves, its gate settings (``judge.schemas``) and the
verdicts of the stages before it (``history``), and puts the levels it applied among the
figures (``figures["thresholds"]``, margins included) so the report draws what was judged.
The ladder's stage records (``ladder.stages``) say which gate judges which stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.judge.rules import (
    check_critic,
    check_input_ignored,
    check_near_chance,
    check_overfitting,
    check_speed,
    common_rules,
    loss_shape,
    median_step,
    noise_level,
    num_classes,
    overfit_reached,
    rolling_mean,
    stage_seconds,
)
from dlsteps.judge.schemas import (
    AdversarialGate,
    CompareGate,
    FullDataGate,
    OverfitGate,
)
from dlsteps.judge.verdict import Primary, Verdict, threshold, verdict_of
from dlsteps.logbook.curves import Curves

# (curves, the stage's gate settings, earlier verdicts, the primary metric) -> verdict
Gate = Callable[[Curves, Any, Mapping[str, Verdict], Primary | None], Verdict]


def _overfit(
    curves: Curves, gate: OverfitGate, history: Mapping[str, Verdict], input_matters: bool
) -> Verdict:
    """The train loss must reach ``train_loss_below`` (mean of ``window`` batches); with
    ``input_matters`` (several samples) a stall with identical outputs is ``input_ignored``."""
    train = curves.get_curve("train/loss")
    figures: dict[str, Any] = {"steps": len(train)}
    if not len(train):
        return Verdict("failed", [Diagnosis("loss_not_decreasing", "no train loss was logged")])
    found, stop = common_rules(curves)
    hit = overfit_reached(train.values, gate.window, gate.train_loss_below)
    figures["final_train_loss"] = float(np.mean(train.values[-gate.window :]))
    seconds = stage_seconds(curves)
    figures["seconds_training"] = round(seconds, 3)
    figures["thresholds"] = [
        threshold(
            "train/loss",
            "<=",
            gate.train_loss_below,
            f"gate: train ≤ {gate.train_loss_below:g}",
        )
    ]
    over_budget = gate.max_seconds is not None and seconds > gate.max_seconds
    if hit is not None and not stop:
        figures["reached_at_step"] = int(train.steps[hit])
    if stop:
        return verdict_of(found, figures)
    if over_budget:
        reached = (
            f"the loss reached {gate.train_loss_below:g}"
            if hit is not None
            else f"the loss was still {figures['final_train_loss']:.4g} (needs "
            f"<= {gate.train_loss_below:g})"
        )
        found.append(
            Diagnosis(
                "slow_batch",
                f"{reached} when the stage had used {seconds:.0f} s of its {gate.max_seconds:.0f} "
                f"s budget ({len(train)} steps, median step "
                f"{median_step(curves) * 1e3:.0f} ms). {hint('slow_batch')}",
                step=int(train.steps[-1]),
            )
        )
    if hit is None:
        spread = curves.get_curve("diag/output_spread")
        ignored = check_input_ignored(spread) if input_matters else None
        classes = num_classes(history, train)
        found.append(ignored or loss_shape(train, gate.window, gate.train_loss_below, classes))
    return verdict_of(found, figures)


def gate_overfit_one(
    curves: Curves,
    gate: OverfitGate,
    history: Mapping[str, Verdict],
    primary: Primary | None = None,
) -> Verdict:
    """One sample: the input is effectively ignored, only the output is debugged."""
    return _overfit(curves, gate, history, input_matters=False)


def gate_overfit_few(
    curves: Curves,
    gate: OverfitGate,
    history: Mapping[str, Verdict],
    primary: Primary | None = None,
) -> Verdict:
    """A few samples: now the output must depend on the input."""
    return _overfit(curves, gate, history, input_matters=True)


def gate_full_data(
    curves: Curves,
    gate: FullDataGate,
    history: Mapping[str, Verdict],
    primary: Primary | None = None,
) -> Verdict:
    """The best smoothed val loss improves on the first and beats the input-independent
    baseline, each by a margin of 4 noise levels; speed is checked."""
    train, val = curves.get_curve("train/loss"), curves.get_curve("val/loss")
    found, stop = common_rules(curves, val=True)
    figures: dict[str, Any] = {"steps": len(train)}
    if len(train):
        figures["final_train_loss"] = float(np.mean(train.values[-gate.window :]))
    if stop or not len(val):
        if not len(val) and not stop:
            found.append(Diagnosis("no_generalization", "no val loss was logged"))
        return verdict_of(found, figures)
    # only full smoothing windows compete for "best": one lucky val batch is not progress
    smooth = rolling_mean(val.values, gate.val_smooth)
    full = min(gate.val_smooth, len(val)) - 1
    first = float(np.median(val.values[: min(3, len(val))]))
    best_i = full + int(np.argmin(smooth[full:]))
    best = float(smooth[best_i])
    # the minimum of a noisy smoothed curve is biased low: demand a margin of 4 noise levels
    margin = 4 * noise_level(val.values) / math.sqrt(min(gate.val_smooth, len(val)))
    figures.update(first_val_loss=first, best_val_loss=best, best_val_step=int(val.steps[best_i]))
    improved_below = first * (1 - gate.min_val_improvement) - margin
    thresholds = [
        threshold(
            "val/loss",
            "<=",
            improved_below,
            f"gate: best val ≤ {improved_below:.4g} ({gate.min_val_improvement:.0%} below the "
            f"first, margin {margin:.2g})",
        )
    ]
    if (ign := check_input_ignored(curves.get_curve("diag/output_spread"))) is not None:
        found.append(ign)
    baseline = curves.get_curve("baseline/val_loss")
    if len(baseline) and gate.beat_baseline:
        base = float(baseline.values[0])
        figures["baseline_val_loss"] = base
        thresholds.append(
            threshold(
                "val/loss", "<", base - margin, f"gate: best val < baseline {base:.4g} - margin"
            )
        )
        if best >= base - margin:
            found.append(
                Diagnosis(
                    "worse_than_baseline",
                    f"best smoothed val loss {best:.4g} (first {first:.4g}) is not clearly "
                    f"below {base:.4g} (margin {margin:.2g} for val-batch noise), the val loss "
                    f"of predicting the train label distribution (or mean) for every input. "
                    f"{hint('worse_than_baseline')}",
                    step=int(val.steps[best_i]),
                )
            )
    figures["thresholds"] = thresholds
    if best > improved_below:
        found.append(
            Diagnosis(
                "no_generalization",
                f"best smoothed val loss {best:.4g} is not {gate.min_val_improvement:.0%} (+ "
                f"margin {margin:.2g} for val-batch noise) below the first val loss {first:.4g} "
                f"while train loss went to "
                f"{figures['final_train_loss']:.4g}. {hint('no_generalization')}",
                step=int(val.steps[best_i]),
            )
        )
    found.extend(check_speed(curves, gate))
    if (over := check_overfitting(train, val, smooth, best_i)) is not None:
        found.append(over)
    if primary is not None and (chance := check_near_chance(curves, primary)) is not None:
        found.append(chance)
    return verdict_of(found, figures)


def gate_adversarial(
    curves: Curves,
    gate: AdversarialGate,
    history: Mapping[str, Verdict],
    primary: Primary | None = None,
) -> Verdict:
    """The critic neither diverges nor collapses, and the generator's full-val L1
    (``metrics/l1``: first row = the L1-only generator it continued from, last row = the
    end of the stage) rises by at most ``max_l1_increase``."""
    train = curves.get_curve("train/loss")
    figures: dict[str, Any] = {"steps": len(train)}
    found = [d for d in (check_critic(curves, gate),) if d]
    common, stop = common_rules(curves)
    found += common
    w = curves.get_curve("gan/wasserstein")
    if len(w):
        figures["final_wasserstein"] = float(np.mean(w.values[-gate.window :]))
    l1, psnr = curves.get_curve("metrics/l1"), curves.get_curve("metrics/psnr")
    if len(psnr) >= 2:
        figures.update(l1_only_psnr=float(psnr.values[0]), val_psnr=float(psnr.values[-1]))
    if len(l1) < 2 or stop:
        if not stop:
            found.append(Diagnosis("adversarial_hurts", "no start and end val L1 was logged"))
        return verdict_of(found, figures)
    start, end = float(l1.values[0]), float(l1.values[-1])
    figures.update(l1_only_val_l1=start, val_l1=end, val_l1_change=end / max(start, 1e-12) - 1)
    limit = start * (1 + gate.max_l1_increase)
    figures["thresholds"] = [threshold("metrics/l1", "<=", limit, f"gate: val L1 ≤ {limit:.4g}")]
    if end > limit:
        found.append(
            Diagnosis(
                "adversarial_hurts",
                f"val L1 rose from {start:.4g} (the L1-only generator) to {end:.4g} "
                f"({end / max(start, 1e-12) - 1:+.1%}), more than max_l1_increase "
                f"{gate.max_l1_increase:.0%}. {hint('adversarial_hurts')}",
                step=int(l1.steps[-1]),
            )
        )
    return verdict_of(found, figures)


# --- augment and scale-up ---------------------------------------------------------------
# Both compare the stage's primary val metric (its last ``metrics/<name>`` row, the
# stage-end full val pass) with an earlier stage's ``primary_metric`` figure: full-data's
# for augment, the best earlier training stage's for scale-up. ``delta`` is signed in the
# metric's units (value - reference); the gate fails when the metric got worse by more
# than ``gate.tolerance``.


def compare_primary(
    curves: Curves,
    gate: CompareGate,
    references: Mapping[str, dict[str, Any]],
    code: str,
    stage: str,
) -> Verdict:
    """The shared rule: NaN/divergence/gradients, then the metric against the best of
    ``references`` (stage name → ``primary_metric`` figure)."""
    train = curves.get_curve("train/loss")
    found, stop = common_rules(curves)
    figures: dict[str, Any] = {"steps": len(train)}
    if len(train):
        figures["final_train_loss"] = float(np.mean(train.values[-gate.window :]))
    if stop:
        return verdict_of(found, figures)
    if not references:
        figures["compared_with"] = None  # no earlier metric in this run: nothing to compare
        return verdict_of(found, figures)
    first = next(iter(references.values()))
    name, higher = first["name"], bool(first["higher_is_better"])
    pick = max if higher else min
    ref_stage = pick(references, key=lambda s: references[s]["value"])
    ref = float(references[ref_stage]["value"])
    curve = curves.get_curve(f"metrics/{name}")
    if not len(curve):
        found.append(Diagnosis(code, f"no metrics/{name} was logged, nothing to compare"))
        return verdict_of(found, figures)
    value = curve.last
    delta = value - ref
    level = ref - gate.tolerance if higher else ref + gate.tolerance
    figures.update(
        compared_with=ref_stage,
        metric=name,
        metric_value=value,
        reference_value=ref,
        delta=delta,
        tolerance=gate.tolerance,
        thresholds=[
            threshold(
                f"metrics/{name}",
                ">=" if higher else "<=",
                level,
                f"gate: {'≥' if higher else '≤'} {level:.4g}",
            )
        ],
    )
    worse_by = -delta if higher else delta
    if worse_by > gate.tolerance:
        found.append(
            Diagnosis(
                code,
                f"val {name} is {value:.4g} after {stage}, {abs(delta):.4g} "
                f"{'below' if higher else 'above'} {ref_stage}'s {ref:.4g} (tolerance "
                f"{gate.tolerance:g}). {hint(code)}",
                step=int(curve.steps[-1]),
            )
        )
    return verdict_of(found, figures)


def _primary_of(verdict: Verdict) -> dict[str, Any] | None:
    figure = verdict.figures.get("primary_metric")
    return figure if isinstance(figure, dict) and figure.get("value") is not None else None


def gate_augment(
    curves: Curves,
    gate: CompareGate,
    history: Mapping[str, Verdict],
    primary: Primary | None = None,
) -> Verdict:
    """Primary val metric not worse than full-data's by more than ``tolerance``."""
    ref = history.get("full-data")
    refs = {"full-data": p} if ref is not None and (p := _primary_of(ref)) else {}
    return compare_primary(curves, gate, refs, "augment_hurts", "augment")


def gate_scale_up(
    curves: Curves,
    gate: CompareGate,
    history: Mapping[str, Verdict],
    primary: Primary | None = None,
) -> Verdict:
    """Primary val metric not worse than the best earlier passed training stage's."""
    refs = {
        name: p
        for name, verdict in history.items()
        if name != "preflight" and verdict.status == "passed" and (p := _primary_of(verdict))
    }
    if refs:  # compare like with like: the metric the latest stage reported
        name = list(refs.values())[-1]["name"]
        refs = {s: p for s, p in refs.items() if p["name"] == name}
    return compare_primary(curves, gate, refs, "scale_up_hurts", "scale-up")
