"""The rules every gate is built from, each a plain function of logged curves.

Tags the rules read: ``train/loss``, ``val/loss``, ``grad/norm``, ``time/data``,
``time/compute``, ``diag/output_spread`` (engine), ``baseline/val_loss`` (full-data, step
0), ``gan/*`` (adversarial). From the preflight verdict (``history``) they read
``expected_init_loss`` (ln C), which names the class count for the softmax-floor message.

Diagnoses come out in order of how directly they name the cause: a NaN before a
divergence before a gradient problem before the shape of the loss curve. The first
``fail`` is the stage's headline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.judge.schemas import AdversarialGate, TrainingGate
from dlsteps.judge.speed import DATA_BOUND_SHARE
from dlsteps.judge.verdict import Primary, Verdict
from dlsteps.logbook.curves import Curve, Curves

# A val batch whose outputs vary this little across inputs (relative to all variation)
# is treated as the model ignoring its input.
SPREAD_IGNORED = 0.02
DIVERGE_FACTOR = 3.0
NOT_DECREASING = 0.10  # less than 10% drop from start to end counts as "did not go down"
EXPLODING_NORM = 1e4
EXPLODING_GROWTH = 1e3
VANISHING_NORM = 1e-6
FLOOR_MATCH = 0.05  # a plateau within 5% of a known loss floor is named after it
LARGE_LOSS = 1e3  # a loss this large is a scale problem (unnormalised targets/inputs)
# a loss still falling at the end: the first and last thirds of the last window (21..99
# steps, a quarter of the stage) differ by more than 4 noise levels, and the trend reaches
# the threshold within 4x the steps already run (a slower "fall" is a stall)
IMPROVING_MIN_WINDOW, IMPROVING_MAX_WINDOW = 21, 99
IMPROVING_NOISE = 4.0
IMPROVING_MAX_EXTRA = 4.0
CHANCE_SE = 2.0  # a metric within this many standard errors of the baseline's: near chance
# Failure codes that describe what the curves did, not why; and the preflight findings
# that explain them, headlined instead when both are there.
SYMPTOMS = (
    "input_ignored",
    "no_gradient",
    "vanishing_gradient",
    "loss_not_decreasing",
    "loss_plateau",
    "still_improving",
    "worse_than_baseline",
    "no_generalization",
    "augment_hurts",
    "scale_up_hurts",
)
CAUSES = ("labels_ignored", "class_missing", "extra_outputs")
WEIGHTS_SHRUNK = 0.5  # weights/norm below this share of its start, with weight decay on
DEAD_SHARE = 0.9  # a ReLU layer with this share of units dead is cut off
DATA_BOUND_SECONDS = 0.05  # a data wait over half the step and this long fails data_bound


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


def softmax_floor(classes: int) -> float:
    """Lowest cross-entropy when the model's 'logits' are probabilities: a one-hot p gives
    -log(e / (e + C - 1)) = ln(e + C - 1) - 1 (0.31 for 2 classes, 1.53 for 10)."""
    return math.log(math.e + classes - 1) - 1


def first_nonfinite(curve: Curve) -> int | None:
    """Index of the first NaN/Inf value of ``curve`` (``None`` when all are finite)."""
    bad = np.flatnonzero(~np.isfinite(curve.values))
    return int(bad[0]) if len(bad) else None


def check_finite(train: Curve, val: Curve | None = None) -> Diagnosis | None:
    for name, curve in (("train", train), ("val", val)):
        if curve is None or (i := first_nonfinite(curve)) is None:
            continue
        step = int(curve.steps[i])
        last_ok = curve.values[:i]
        before = f" (last finite value {last_ok[-1]:.4g})" if len(last_ok) else ""
        where = (
            "training stopped there and the logs up to it are kept"
            if name == "train"
            else "the train loss stayed finite, so look at the val data or the model in eval mode"
        )
        return Diagnosis(
            "nan_loss",
            f"{name} loss became {curve.values[i]} at step {step}{before}; {where}. "
            f"{hint('nan_loss')}",
            step=step,
        )
    return None


def check_diverging(train: Curve) -> Diagnosis | None:
    values = train.values[np.isfinite(train.values)]
    if len(values) < 4:
        return None
    k = max(1, min(10, len(values) // 10))
    start = float(np.median(values[:k]))
    smooth = rolling_mean(values, k)
    peak_i = int(np.argmax(smooth))
    end = float(smooth[-1])
    if end > DIVERGE_FACTOR * max(float(values[0]), 1e-8):
        # blew up within the first k steps (so their median is already high): measure
        # from the loss at init, and the stage ended far above it
        start = float(values[0])
    if smooth[peak_i] > DIVERGE_FACTOR * max(start, 1e-8) and end > start:
        return Diagnosis(
            "diverging",
            f"train loss rose from {start:.4g} to {smooth[peak_i]:.4g} (step "
            f"{int(train.steps[peak_i])}) and ended at {end:.4g}, above where it started. "
            f"{hint('diverging')}",
            step=int(train.steps[peak_i]),
        )
    return None


def check_gradients(
    grad: Curve, train_improved: bool, groups: Mapping[str, Curve] | None = None
) -> Diagnosis | None:
    if not len(grad):
        return None
    values = grad.values
    if (i := first_nonfinite(grad)) is not None:
        step = int(grad.steps[i])
        return Diagnosis(
            "exploding_gradient",
            f"gradient norm became {values[i]} at step {step}. {hint('exploding_gradient')}",
            step=step,
        )
    if not np.any(values != 0):
        return Diagnosis(
            "no_gradient",
            f"the gradient norm was exactly 0 at all {len(values)} steps: no trainable "
            "parameter receives a gradient, so nothing trains (a detached or no_grad forward, "
            "or an output clamped or ReLU'd to a constant on this data). "
            f"{hint('no_gradient')}",
            step=int(grad.steps[0]),
        )
    early = float(np.median(values[: min(10, len(values))]))
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
        layers = sorted(
            (float(np.median(c.values)), name) for name, c in (groups or {}).items() if len(c)
        )
        named = (
            "; per layer group (median): " + ", ".join(f"{n} {v:.1e}" for v, n in layers[:5])
            if layers
            else ""
        )
        return Diagnosis(
            "vanishing_gradient",
            f"median gradient norm is {median:.2e} (under {VANISHING_NORM:g}) while the loss did "
            f"not improve{named}. {hint('vanishing_gradient')}",
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
            f"{level:.2e}, relative std across the batch over the second half of the stage, "
            f"threshold {SPREAD_IGNORED}). {hint('input_ignored')}",
            step=int(spread.steps[len(spread.steps) // 2]),
        )
    return None


def num_classes(history: Mapping[str, Verdict], train: Curve) -> int | None:
    """The class count, for cross-entropy tasks: from preflight's ln C, else from a first
    loss that is ln C almost exactly (what probabilities fed to cross-entropy give)."""
    pre = history.get("preflight")
    expected = pre.figures.get("expected_init_loss") if pre is not None else None
    if expected is not None:
        return round(math.exp(expected))
    if pre is not None or not len(train) or not 0.6 < train.values[0] < math.log(1000):
        return None
    guess = round(math.exp(train.values[0]))
    return guess if abs(train.values[0] - math.log(guess)) < 0.01 else None


def loss_shape(
    train: Curve, window: int, threshold: float, classes: int | None = None
) -> Diagnosis:
    """Why an overfit stage missed its threshold: no drop at all, or a stall; a stall at a
    known floor (softmax before cross-entropy, the uniform prediction) is named."""
    values = train.values
    k = min(window, len(values))
    start = float(np.mean(values[:k]))
    end = float(np.mean(values[-k:]))
    drop = 1.0 - end / start if start > 0 else 0.0
    step = int(train.steps[-1])
    scale = (
        f" A loss of {start:.3g} means badly scaled targets or inputs: standardise regression "
        "targets (and inputs) to about zero mean and unit variance."
        if start > LARGE_LOSS
        else ""
    )
    if drop < NOT_DECREASING:
        uniform = (
            f" {end:.4g} is ln {classes}: the model predicts the same probability for every class."
            if classes and abs(end - math.log(classes)) <= FLOOR_MATCH * math.log(classes)
            else ""
        )
        return Diagnosis(
            "loss_not_decreasing",
            f"train loss went from {start:.4g} to {end:.4g} over {len(values)} steps "
            f"({-drop:+.1%}); the gate needs <= {threshold:g}.{uniform}{scale} "
            f"{hint('loss_not_decreasing')}",
            step=step,
        )
    if classes and abs(end - softmax_floor(classes)) <= FLOOR_MATCH * softmax_floor(classes):
        return Diagnosis(
            "loss_plateau",
            f"train loss fell from {start:.4g} but stalled at {end:.4g} after {len(values)} "
            f"steps, the floor of cross-entropy on probabilities for {classes} classes: "
            f"ln(e + {classes} - 1) - 1 = {softmax_floor(classes):.4g}. The model applies "
            "softmax (or sigmoid) before a loss that applies it again: return raw logits "
            "from forward().",
            step=step,
        )
    if (trend := still_falling(train, threshold)) is not None:
        return Diagnosis(
            "still_improving",
            f"train loss was still falling when the stage's {len(values)} steps ran out: "
            f"{trend.before:.4g} -> {trend.after:.4g} from the first to the last third of its "
            f"last {trend.window} steps ({trend.rate:.2%} per step, {trend.strength:.0f}x the "
            f"noise of the curve), now {end:.4g}; the gate needs <= {threshold:g}. Slowing "
            f"as it does, it gets there in about {trend.steps_needed} more steps: nothing is "
            f"stuck, the stage is too short. Raise its steps to about "
            f"{_round_up(len(values) + 2 * trend.steps_needed)}, which leaves room for the "
            f"curve to slow down further. {hint('still_improving')}",
            step=step,
        )
    return Diagnosis(
        "loss_plateau",
        f"train loss fell from {start:.4g} but stalled at {end:.4g} (mean of the last {k} "
        f"batches) after {len(values)} steps; the gate needs <= {threshold:g}.{scale} "
        f"{hint('loss_plateau')}",
        step=step,
    )


@dataclass(frozen=True)
class Trend:
    """A loss still falling at the end of a curve, read off its last ``window`` steps."""

    window: int
    before: float  # geometric mean of the window's first third
    after: float  # ... and of its last third
    rate: float  # relative fall per step now (the last third against the middle one)
    strength: float  # the fall from the first third to the last, in units of its noise
    steps_needed: int  # more steps to reach the threshold, the fall slowing as it has


def still_falling(train: Curve, threshold: float) -> Trend | None:
    """Whether the loss is still clearly falling at the end, and how many more steps it
    needs to reach ``threshold``.

    The last window is cut into thirds, compared in log space (losses fall
    geometrically). Falling means the last third is lower than the first by more than
    ``IMPROVING_NOISE`` noise levels of the curve (the robust point noise), so a noisy
    stall does not count. The projection lets the fall keep slowing down as it did from
    the middle third to the last; a fall that slows to a stop above the threshold, or
    that would need more than ``IMPROVING_MAX_EXTRA`` times the steps already run, is a
    stall, not a short stage."""
    values = train.values[np.isfinite(train.values)]
    n = len(values)
    window = 3 * (max(IMPROVING_MIN_WINDOW, min(IMPROVING_MAX_WINDOW, n // 4)) // 3)
    if n < window or threshold <= 0:
        return None
    logs = np.log(np.maximum(values[-window:], 1e-12))
    third = window // 3
    first, middle, last = (float(np.mean(logs[i * third : (i + 1) * third])) for i in range(3))
    noise = noise_level(logs) * math.sqrt(2 / third)  # std of a difference of two means
    fall = first - last
    if fall <= IMPROVING_NOISE * max(noise, 1e-9):
        return None
    early, late = (first - middle) / third, (middle - last) / third  # log fall per step
    if late <= 0:
        return None
    now = last - late * (third - 1) / 2  # the trend's value at the last step
    slowdown = min(late / early, 1.0) if early > 0 else 1.0
    needed = _steps_to(now - math.log(threshold), late, slowdown, third)
    if needed is None or needed <= 0 or needed > IMPROVING_MAX_EXTRA * n:
        return None
    return Trend(
        window,
        math.exp(first),
        math.exp(last),
        1 - math.exp(-late),
        fall / max(noise, 1e-9),
        math.ceil(needed),
    )


def _steps_to(drop: float, rate: float, slowdown: float, third: int) -> float | None:
    """Steps for a log loss falling ``rate`` per step now to fall ``drop`` more, when the
    rate shrinks by ``slowdown`` every ``third`` steps (geometrically); None when it
    levels off first."""
    per_step = slowdown ** (1 / third)
    if per_step >= 1.0 - 1e-12:
        return drop / rate
    reachable = rate * per_step / (1 - per_step)  # the whole remaining fall
    if drop >= reachable:
        return None
    return math.log(1 - drop * (1 - per_step) / (rate * per_step)) / math.log(per_step)


def _round_up(steps: int) -> int:
    """A step count as a person would set it: two significant figures, rounded up."""
    scale = 10 ** max(0, len(str(steps)) - 2)
    return -(-steps // scale) * scale


def common_rules(curves: Curves, val: bool = False) -> tuple[list[Diagnosis], bool]:
    """NaN, divergence and gradient rules; returns (diagnoses, stop_here)."""
    train = curves.get_curve("train/loss")
    diverging = check_diverging(train)
    if (nan := check_finite(train, curves.get_curve("val/loss") if val else None)) is not None:
        # a loss that climbed before it overflowed: the climb names the cause
        return [d for d in (diverging, nan) if d], True
    found = [d for d in (diverging,) if d]
    k = max(1, min(10, len(train) // 5))
    improved = len(train) > 1 and np.mean(train.values[-k:]) < 0.9 * np.mean(train.values[:k])
    groups = {
        t.removeprefix("grad/norm/"): c for t, c in curves.items() if t.startswith("grad/norm/")
    }
    if (grad := check_gradients(curves.get_curve("grad/norm"), bool(improved), groups)) is not None:
        found.append(grad)
    return found, bool(found)


def check_speed(curves: Curves, gate: TrainingGate) -> list[Diagnosis]:
    data = curves.get_curve("time/data")
    if not len(data) or not len(curves.get_curve("time/compute")):
        return []
    median = median_step(curves)
    wait = float(np.median(data.values))
    data_share = wait / max(median, 1e-12)
    slow = median > gate.max_batch_seconds
    found = []
    if data_share > DATA_BOUND_SHARE:
        # a loader that wastes real time fails; sub-DATA_BOUND_SECONDS waits are only advice
        costly = slow or wait >= DATA_BOUND_SECONDS
        found.append(
            Diagnosis(
                "data_bound",
                f"waiting for data takes {data_share:.0%} of each step (median "
                f"{wait * 1e3:.1f} ms of {median * 1e3:.1f} ms). {hint('data_bound')}",
                severity="fail" if costly else "warn",
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


def noise_level(values: np.ndarray) -> float:
    """Robust std of one point's noise around a slow trend (from successive differences)."""
    if len(values) < 3:
        return 0.0
    diff = np.diff(values)
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2))


def stage_seconds(curves: Curves) -> float:
    return float(
        curves.get_curve("time/data").values.sum() + curves.get_curve("time/compute").values.sum()
    )


def median_step(curves: Curves) -> float:
    data, compute = curves.get_curve("time/data"), curves.get_curve("time/compute")
    n = min(len(data), len(compute))
    return float(np.median(data.values[:n] + compute.values[:n])) if n else 0.0


def likely_cause(
    verdict: Verdict, curves: Curves, history: Mapping[str, Verdict]
) -> Diagnosis | None:
    """When a stage fails with a symptom (``SYMPTOMS``: the input ignored, no gradient, a
    stall, no generalization) and a cause of it was already seen, the cause as the
    headline: a class swallowed by ``ignore_index``, a missing class or more outputs than
    classes (preflight's warnings), or a weight decay that shrinks the weights faster than
    the loss can pull them (this stage's own ``lr`` and ``optim/weight_decay``)."""
    fails = [d for d in verdict.diagnoses if d.severity == "fail"]
    if not fails or fails[0].code not in SYMPTOMS:
        return None
    symptom = fails[0].code
    for found in (check_weight_decay(curves), check_dead_units(curves)):
        if found is not None:
            return Diagnosis(
                found.code,
                f"{symptom} is likely caused by this: {found.message}",
                "fail",
                step=found.step,
            )
    pre = history.get("preflight")
    seen = [d for d in pre.diagnoses if d.code in CAUSES] if pre is not None else []
    if not seen:
        return None
    return Diagnosis(
        seen[0].code,
        f"{symptom} is likely caused by what preflight found: {seen[0].message}",
        "fail",
        step=fails[0].step,
    )


def check_weight_decay(curves: Curves) -> Diagnosis | None:
    """Decoupled weight decay shrinks every weight by ``(1 - lr * wd)`` per step, a
    factor ``exp(-sum(lr) * wd)`` over the stage: above e, the decay alone takes the
    weights most of the way to zero whatever the gradient says. Also seen directly: the
    norm of all weights (``weights/norm``) fell below half of its start."""
    wd, lr = curves.get_curve("optim/weight_decay"), curves.get_curve("lr")
    if not (len(wd) and len(lr)) or not wd.values[0] > 0:
        return None
    shrink = float(wd.values[0] * np.sum(lr.values))
    norm = curves.get_curve("weights/norm")
    ratio = float(norm.values[-1] / max(norm.values[0], 1e-12)) if len(norm) > 1 else 1.0
    if shrink < 1.0 and ratio >= WEIGHTS_SHRUNK:
        return None
    seen = f"; the weights' norm fell to {ratio:.0%} of its start" if ratio < 1 else ""
    return Diagnosis(
        "weight_decay_too_large",
        f"weight decay {wd.values[0]:g} at this stage's learning rates shrinks every weight "
        f"by a factor {math.exp(min(shrink, 700)):.3g} over its {len(lr)} steps on its own "
        f"(sum of lr x weight_decay = {shrink:.3g}; below 1 the decay stays a regularizer)"
        f"{seen}. {hint('weight_decay_too_large')}",
        "fail",
        step=int(lr.steps[-1]),
    )


def check_dead_units(curves: Curves) -> Diagnosis | None:
    """ReLU layers whose units are nearly all 0 for every input of the probe batch at the
    end of the stage (``health/dead/<layer>``): they pass no gradient back. Read only as
    the cause of a failed stage (``likely_cause``)."""
    dead = {
        tag.removeprefix("health/dead/"): curve.last
        for tag, curve in curves.items()
        if tag.startswith("health/dead/") and len(curve) and curve.last >= DEAD_SHARE
    }
    if not dead:
        return None
    shown = ", ".join(f"'{name}' {share:.0%}" for name, share in sorted(dead.items())[:5])
    step = int(next(c for t, c in curves.items() if t.startswith("health/dead/")).steps[-1])
    return Diagnosis(
        "dead_units",
        f"{len(dead)} ReLU layers have nearly all units dead (0 for every input of a fixed "
        f"val batch) at the end of the stage: {shown}; they pass no gradient to the layers "
        f"before them. {hint('dead_units')}",
        "warn",
        step=step,
    )


def check_near_chance(curves: Curves, primary: Primary) -> Diagnosis | None:
    """The stage-end primary metric within two standard errors (at this val size) of what
    the input-independent predictor scores (``baseline/<metric>``, ``baseline/<metric>_se``,
    logged by the task at the start of full-data): a pass on the loss that the metric
    barely supports."""
    curve = curves.get_curve(f"metrics/{primary.name}")
    base = curves.get_curve(f"baseline/{primary.name}")
    if not (len(curve) and len(base)):
        return None
    se_curve = curves.get_curve(f"baseline/{primary.name}_se")
    value, level = curve.last, float(base.values[0])
    se = float(se_curve.values[0]) if len(se_curve) else 0.0
    margin = CHANCE_SE * se
    near = value < level + margin if primary.higher_is_better else value > level - margin
    if not near:
        return None
    return Diagnosis(
        "near_chance",
        f"val {primary.name} is {value:.4g} at the end of the stage, within {CHANCE_SE:g} "
        f"standard errors ({CHANCE_SE:g} x {se:.2g} at this val size) of {level:.4g}, what a "
        f"predictor that ignores its input scores (the most frequent train class, or the "
        f"train mean). The val loss improved, but the model barely beats chance. "
        f"{hint('near_chance')}",
        severity="warn",
        step=int(curve.steps[-1]),
    )


def check_critic(curves: Curves, gate: AdversarialGate) -> Diagnosis | None:
    """``critic_diverging`` (non-finite, or an estimate far above what a 1-Lipschitz critic
    can reach: the mean L2 distance between real and generated images, ``gan/distance``)
    or ``critic_collapse`` (an estimate near zero against that distance)."""
    w, dist = curves.get_curve("gan/wasserstein"), curves.get_curve("gan/distance")
    if not len(w):
        return None
    for tag in ("gan/wasserstein", "gan/critic", "gan/gp"):
        curve = curves.get_curve(tag)
        if (i := first_nonfinite(curve)) is not None:
            step = int(curve.steps[i])
            return Diagnosis(
                "critic_diverging",
                f"{tag} became {curve.values[i]} at step {step}. {hint('critic_diverging')}",
                step=step,
            )
    n = min(len(w), len(dist))
    if not n:
        return None
    w_smooth = rolling_mean(w.values[:n], gate.window)
    d_smooth = rolling_mean(dist.values[:n], gate.window)
    ratio = np.abs(w_smooth) / np.maximum(d_smooth, 1e-12)
    ratio[~np.isfinite(ratio)] = 0.0  # a generator gone NaN is judged by the loss rules
    peak_i = int(np.argmax(ratio))
    if ratio[peak_i] > gate.max_wasserstein_ratio:
        return Diagnosis(
            "critic_diverging",
            f"the Wasserstein estimate reached {w_smooth[peak_i]:.4g} (mean of {gate.window} "
            f"steps) at step {int(w.steps[peak_i])}, {ratio[peak_i]:.3g}x the mean L2 distance "
            f"between real and generated images ({d_smooth[peak_i]:.4g}); a 1-Lipschitz "
            f"critic stays below 1x (max_wasserstein_ratio {gate.max_wasserstein_ratio:g}). "
            f"{hint('critic_diverging')}",
            step=int(w.steps[peak_i]),
        )
    level = float(np.median(ratio[n // 2 :]))
    if level < gate.min_wasserstein_ratio:
        return Diagnosis(
            "critic_collapse",
            f"the Wasserstein estimate stayed at {level:.2e}x the real-generated distance "
            f"(median over the second half, min_wasserstein_ratio "
            f"{gate.min_wasserstein_ratio:g}): the critic does not tell real from generated "
            f"images. {hint('critic_collapse')}",
            step=int(w.steps[n // 2]),
        )
    return None
