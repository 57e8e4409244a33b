"""Each gate rule on hand-made curves: it passes a healthy curve and names the failure of a
broken one (milliseconds each, no model)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dlsteps.judge.diagnoses import Diagnosis
from dlsteps.judge.rules import (
    check_diverging,
    check_finite,
    check_gradients,
    noise_level,
    softmax_floor,
)
from dlsteps.judge.schemas import FullDataGate, OverfitGate
from dlsteps.judge.verdict import Verdict
from dlsteps.ladder.stages import judge_stage as judge
from dlsteps.logbook.curves import Curve, Curves

OVERFIT, FULL = OverfitGate(), FullDataGate()


def curve(values, start: int = 1) -> Curve:
    v = np.asarray(values, dtype=np.float64)
    return Curve(np.arange(start, start + len(v), dtype=np.int64), v)


def curves(n: int | None = None, **tags) -> Curves:
    """Tags as keyword arguments with '/' written '__'; missing timing is 10 ms compute."""
    out = Curves({k.replace("__", "/"): curve(v) for k, v in tags.items()})
    n = n or len(out["train/loss"])
    out.setdefault("time/data", curve(np.full(n, 0.001)))
    out.setdefault("time/compute", curve(np.full(n, 0.01)))
    out.setdefault("grad/norm", curve(np.full(n, 1.0)))
    return out


def codes(verdict: Verdict, severity: str = "fail") -> list[str]:
    return [d.code for d in verdict.diagnoses if d.severity == severity]


def normal(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def decaying(n: int, start: float, end: float, noise: float = 0.0) -> np.ndarray:
    v = start * (end / start) ** (np.arange(n) / (n - 1))
    return v * (1 + noise * normal(n))


# --- overfit stages -------------------------------------------------------------------


def test_overfit_passes_when_the_loss_reaches_the_threshold() -> None:
    v = judge("overfit-one", curves(train__loss=decaying(80, 1.4, 1e-3)), OVERFIT)
    assert v.status == "passed" and not v.diagnoses
    assert v.figures["reached_at_step"] <= 80


def test_nan_is_reported_with_its_step() -> None:
    loss = [*decaying(6, 1.4, 1.0), float("nan")]
    v = judge("overfit-one", curves(train__loss=loss), OVERFIT)
    assert codes(v) == ["nan_loss"] and v.diagnoses[0].step == 7
    assert "step 7" in v.diagnoses[0].message
    assert check_finite(curve(decaying(5, 1, 0.5))) is None


def test_a_climb_before_the_overflow_is_named_first() -> None:
    loss = [*np.geomspace(1.0, 1e30, 20), float("inf")]
    v = judge("overfit-one", curves(train__loss=loss), OVERFIT)
    assert codes(v) == ["diverging", "nan_loss"]


def test_diverging_needs_a_rise_far_above_the_start() -> None:
    assert check_diverging(curve(np.linspace(1, 10, 50))) is not None
    assert check_diverging(curve(decaying(50, 1, 0.1, noise=0.2))) is None
    # an explosion at step 2 that never comes back: measured from the loss at init
    assert check_diverging(curve(np.r_[1.4, np.full(5, 5e3), np.full(44, 90.0)])) is not None
    # a spike that recovers below the start is not a divergence
    spike = np.r_[np.full(20, 1.0), np.full(5, 8.0), np.full(25, 0.5)]
    assert check_diverging(curve(spike)) is None


def test_flat_loss_is_not_decreasing_and_names_the_uniform_prediction() -> None:
    loss = np.full(150, math.log(4)) + 0.001 * normal(150)
    pre = {"preflight": Verdict("passed", [], {"expected_init_loss": math.log(4)})}
    v = judge("overfit-one", curves(train__loss=loss), OVERFIT, pre)
    assert codes(v) == ["loss_not_decreasing"]
    assert "ln 4" in v.diagnoses[0].message


def test_plateau_at_the_softmax_floor_says_softmax() -> None:
    floor = softmax_floor(4)  # ln(e + 3) - 1
    assert floor == pytest.approx(0.7437, abs=1e-4)
    loss = np.r_[math.log(4), decaying(149, 1.3, floor * 1.001)]
    v = judge("overfit-one", curves(train__loss=loss), OVERFIT)  # C guessed from ln 4 at start
    assert codes(v) == ["loss_plateau"]
    assert "softmax" in v.diagnoses[0].message and "0.7437" in v.diagnoses[0].message
    # a plateau elsewhere (falls, then flat) gets the generic message
    stalled = np.r_[1.386, decaying(60, 1.3, 0.3), np.full(89, 0.3)]
    other = judge("overfit-one", curves(train__loss=stalled), OVERFIT)
    assert codes(other) == ["loss_plateau"] and "softmax" not in other.diagnoses[0].message


def test_a_loss_still_falling_when_the_steps_run_out_is_not_a_plateau() -> None:
    """Observation 3 of issue 13: overfit-few's loss fell 0.13 -> 0.097 over its last 50
    of 500 steps, a straight line on a log chart, and was called a plateau."""
    rng = np.random.default_rng(0)
    falling = decaying(500, 2.3, 0.097, noise=0.05)
    v = judge("overfit-few", curves(train__loss=falling), OVERFIT)
    (d,) = v.diagnoses
    assert d.code == "still_improving" and v.status == "failed"  # the stage still fails
    more = int(d.message.split("about ")[1].split(" more steps")[0])
    assert 200 < more < 600  # 0.097 -> 0.01 at ~0.6 % per step
    assert "Raise its steps to about" in d.message
    # a real stall with noise around a level stays a plateau
    stall = np.r_[decaying(100, 2.3, 0.3), 0.3 * (1 + 0.05 * rng.standard_normal(400))]
    assert codes(judge("overfit-few", curves(train__loss=stall), OVERFIT)) == ["loss_plateau"]
    # a crawl that would need 10x the steps is a stall too, not a short stage
    crawl = np.r_[decaying(100, 2.3, 0.3), decaying(400, 0.3, 0.28, noise=0.01)]
    assert codes(judge("overfit-few", curves(train__loss=crawl), OVERFIT)) == ["loss_plateau"]


def test_huge_losses_get_a_scaling_hint() -> None:
    v = judge("overfit-one", curves(train__loss=np.full(100, 1.7e8)), OVERFIT)
    assert codes(v) == ["loss_not_decreasing"] and "standardise" in v.diagnoses[0].message


def test_input_ignored_only_where_the_output_must_depend_on_the_input() -> None:
    loss = decaying(200, 2.3, 0.9)  # stalls at the batch's label entropy
    flat = dict(train__loss=loss, diag__output_spread=np.full(200, 1e-4))
    assert codes(judge("overfit-few", curves(**flat), OVERFIT)) == ["input_ignored"]
    # overfit-one may ignore its input: there it is just a plateau
    assert codes(judge("overfit-one", curves(**flat), OVERFIT)) == ["loss_plateau"]
    varied = dict(train__loss=loss, diag__output_spread=np.full(200, 0.4))
    assert codes(judge("overfit-few", curves(**varied), OVERFIT)) == ["loss_plateau"]


def test_stage_over_its_time_budget_is_slow() -> None:
    gate = OverfitGate(max_seconds=1.0)
    c = curves(train__loss=decaying(50, 1.4, 0.5), time__compute=np.full(50, 0.1))
    v = judge("overfit-few", c, gate)
    assert codes(v)[0] == "slow_batch" and "budget" in v.diagnoses[0].message


@pytest.mark.parametrize(
    ("grad", "improved", "code"),
    [
        (np.zeros(50), False, "no_gradient"),
        (np.r_[np.ones(20), np.inf], True, "exploding_gradient"),
        (np.r_[np.ones(20), np.full(5, 1e5)], True, "exploding_gradient"),
        (np.full(50, 1e-9), False, "vanishing_gradient"),
        (np.full(50, 1e-9), True, None),  # a converged model has tiny gradients
        (np.full(50, 0.5) + np.random.default_rng(1).random(50), False, None),
    ],
)
def test_gradient_rules(grad, improved, code) -> None:
    found = check_gradients(curve(grad), improved)
    assert (found.code if found else None) == code


def test_zero_gradient_stage_fails_with_no_gradient() -> None:
    c = curves(train__loss=np.full(100, 1.386), grad__norm=np.zeros(100))
    assert codes(judge("overfit-one", c, OVERFIT))[0] == "no_gradient"


# --- full-data ------------------------------------------------------------------------


def full(val, baseline: float | None = 1.0, n: int | None = None, **tags) -> Curves:
    n = n or len(val)
    extra = {"baseline__val_loss": [baseline]} if baseline is not None else {}
    return curves(n, train__loss=decaying(n, 1.4, 0.2), val__loss=val, **extra, **tags)


def test_full_data_passes_when_val_improves_below_the_baseline() -> None:
    v = judge("full-data", full(decaying(100, 1.4, 0.4, noise=0.05)), FULL)
    assert v.status == "passed" and not codes(v, "fail")
    assert v.figures["best_val_loss"] < v.figures["baseline_val_loss"]


def test_val_stuck_at_the_baseline_is_worse_than_baseline() -> None:
    val = 1.0 + 0.05 * normal(100)  # noise dips below 1.0 now and then
    val[:3] = 1.0
    v = judge("full-data", full(val, baseline=1.0), FULL)
    assert codes(v) == ["worse_than_baseline", "no_generalization"]
    assert "margin" in v.diagnoses[0].message


def test_no_generalization_without_a_baseline() -> None:
    val = np.linspace(1.0, 1.3, 100)  # memorising: val only rises
    v = judge("full-data", full(val, baseline=None), FULL)
    assert codes(v) == ["no_generalization"]


def test_noise_level_measures_point_noise_not_trend() -> None:
    trend = np.linspace(2, 0.5, 200)
    assert noise_level(trend) == pytest.approx(0.0, abs=1e-9)
    noisy = trend + 0.1 * normal(200)
    assert 0.07 < noise_level(noisy) < 0.13


def test_full_data_input_ignored_is_named_first() -> None:
    val = np.full(60, 1.0)
    v = judge("full-data", full(val, diag__output_spread=np.full(60, 1e-5)), FULL)
    assert codes(v)[0] == "input_ignored"


def test_data_bound_warns_when_fast_and_fails_when_slow() -> None:
    val = decaying(40, 1.4, 0.4)
    fast = judge("full-data", full(val, time__data=np.full(40, 0.02)), FULL)
    assert fast.status == "passed" and codes(fast, "warn") == ["data_bound"]
    gate = FullDataGate(max_batch_seconds=0.02)
    slow = judge("full-data", full(val, time__data=np.full(40, 0.03)), gate)
    assert codes(slow) == ["data_bound", "slow_batch"]
    assert "ms" in slow.diagnoses[0].message
    # a wait that costs real time fails even within max_batch_seconds
    costly = judge("full-data", full(val, time__data=np.full(40, 0.08)), FULL)
    assert codes(costly) == ["data_bound"]


def test_overfitting_is_a_warning_with_advice() -> None:
    val = np.r_[decaying(50, 1.4, 0.5), np.linspace(0.5, 0.9, 50)]
    n = 100
    c = curves(n, train__loss=decaying(n, 1.4, 0.01), val__loss=val, baseline__val_loss=[1.2])
    v = judge("full-data", c, FULL)
    assert v.status == "passed" and codes(v, "warn") == ["overfitting"]
    assert "augment" in v.diagnoses[0].message


def test_nan_val_loss_is_reported() -> None:
    val = [*decaying(10, 1.4, 1.0), float("nan"), 1.0]
    v = judge("full-data", full(val), FULL)
    assert codes(v) == ["nan_loss"] and "val loss" in v.diagnoses[0].message


def test_verdict_round_trips_through_json() -> None:
    v = Verdict("failed", [Diagnosis("diverging", "rose", step=3)], {"steps": 4})
    diagnoses = [d.to_json() for d in v.diagnoses]
    data = {"status": v.status, "diagnoses": diagnoses, "figures": v.figures}
    back = Verdict.from_json(json.loads(json.dumps(data)))  # as summary.json stores it
    assert back == v
