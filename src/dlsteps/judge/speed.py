"""The speed report of a training stage: where each step's time goes, and what to change.

A pure function of the logbook, like the gates, so ``dlsteps report`` can redo it for an
old run and tests feed it hand-made curves. It reads the engine's per-step ``time/data``
(waiting for the train and val batches, plus the copy to the device) and ``time/compute``
(the optimizer step and the val forward), and its per-flush ``time/steps_per_s``,
``time/samples_per_s`` (wall clock, logging included) and ``mem/host_peak_mb`` /
``mem/device_peak_mb`` (present only on CUDA, which is how the advice knows a GPU ran).

The bottleneck is ``data`` when waiting for data takes more than half of the median step
(the ``data_bound`` rule of the gates), else ``compute``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlsteps.logbook.curves import Curves

DATA_BOUND_SHARE = 0.5
# more than this share of the wall time spent outside data and compute deserves a line
OTHER_SHARE_NOTE = 0.25


def speed_figures(curves: Curves, max_batch_seconds: float | None = None) -> dict[str, Any]:
    """``{"median_batch_seconds": s, "speed": {...}}`` for a verdict; ``{}`` without timings."""
    data, compute = curves.get_curve("time/data"), curves.get_curve("time/compute")
    n = min(len(data), len(compute))
    if not n:
        return {}
    d, c = data.values[:n], compute.values[:n]  # (N,) seconds per step
    step = d + c
    median_step = float(np.median(step))
    data_share = float(np.median(d)) / max(median_step, 1e-12)
    speed: dict[str, Any] = {
        "steps_timed": int(n),
        "data_ms": _median_p90(d),
        "compute_ms": _median_p90(c),
        "step_ms": _median_p90(step),
        "data_share": round(data_share, 4),
    }
    rates = curves.get_curve("time/steps_per_s")
    if len(rates):
        speed["steps_per_s"] = _round(float(np.median(rates.values)))
        # wall time of all chunks (each is its steps over its rate) vs time inside steps
        chunk_steps = np.diff(np.concatenate([[int(data.steps[0]) - 1], rates.steps]))
        wall = float(np.sum(chunk_steps / np.maximum(rates.values, 1e-12)))
        inside = float(np.sum(step[data.steps[:n] <= rates.steps[-1]]))
        speed["other_share"] = round(max(0.0, 1.0 - inside / max(wall, 1e-12)), 4)
    samples = curves.get_curve("time/samples_per_s")
    if len(samples):
        speed["samples_per_s"] = _round(float(np.median(samples.values)))
    for key in ("host_peak_mb", "device_peak_mb"):
        if len(mem := curves.get_curve(f"mem/{key}")):
            speed[key] = _round(float(np.max(mem.values)))
    speed["bottleneck"] = "data" if data_share > DATA_BOUND_SHARE else "compute"
    slow = max_batch_seconds is not None and median_step > max_batch_seconds
    speed["advice"] = _advice(speed, cuda="device_peak_mb" in speed, slow=slow)
    return {"median_batch_seconds": _round(median_step), "speed": speed}


def _advice(speed: dict[str, Any], cuda: bool, slow: bool) -> list[str]:
    advice = []
    if speed["bottleneck"] == "data":
        advice.append(
            f"waiting for data takes {speed['data_share']:.0%} of each step: raise "
            "data.num_workers (worker processes load batches while the model computes; up "
            "to about one per CPU core)"
        )
        advice.append(
            "decode, resize or generate once and cache the result instead of in every "
            "__getitem__; smaller images load faster"
        )
        if cuda:
            advice.append(
                "keep data.pin_memory on (the default on CUDA); do augmentation on the GPU"
            )
    elif cuda:
        peak = speed.get("device_peak_mb")
        advice.append(
            "compute-bound on the GPU: precision: bf16 (autocast); channels_last memory "
            "format for conv nets; a larger batch while memory allows"
            + (f" (peak {peak:.0f} MB so far)" if peak is not None else "")
        )
    else:
        advice.append(
            "compute-bound on the CPU: smaller images or a smaller model; on a machine with "
            "a GPU, device: cuda and precision: bf16. threads: auto keeps half the cores "
            "free for other work; on a quiet machine of your own, threads: <cores> may be faster"
        )
    if slow:
        advice.insert(0, "the median step is over gate.max_batch_seconds (slow_batch)")
    if speed.get("other_share", 0.0) > OTHER_SHARE_NOTE:
        advice.append(
            f"{speed['other_share']:.0%} of the wall time is outside data and compute "
            "(flushes, full-val metrics, pictures, checkpoints): raise log.flush_every, "
            "metrics.every or log.images_every"
        )
    return advice


def format_speed(figures: dict[str, Any]) -> list[str]:
    """The report as console lines, from a verdict's figures (``[]`` when it has none)."""
    speed = figures.get("speed")
    if not speed:
        return []
    parts = [
        f"{name} {_num(speed[key]['median'])} / {_num(speed[key]['p90'])} ms"
        for name, key in (("data", "data_ms"), ("compute", "compute_ms"), ("step", "step_ms"))
    ]
    lines = ["speed (median / p90): " + " · ".join(parts)]
    rest = []
    if "samples_per_s" in speed:
        rest.append(f"{_num(speed['samples_per_s'])} samples/s")
    if "steps_per_s" in speed:
        rest.append(f"{_num(speed['steps_per_s'])} steps/s")
    memory = [
        f"{where} {speed[key]:.0f} MB"
        for where, key in (("host", "host_peak_mb"), ("device", "device_peak_mb"))
        if key in speed
    ]
    if memory:
        rest.append("peak memory " + ", ".join(memory))
    rest.append(f"bottleneck: {speed['bottleneck']}")
    lines.append(" · ".join(rest))
    lines += [f"→ {item}" for item in speed["advice"]]
    return lines


def _median_p90(values: np.ndarray) -> dict[str, float]:
    return {
        "median": _round(float(np.median(values)) * 1e3),
        "p90": _round(float(np.percentile(values, 90)) * 1e3),
    }


def _num(value: float) -> str:
    """Three significant digits without an exponent: 0.0123, 1.23, 123, 12345."""
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"


def _round(value: float) -> float:
    """Four significant digits: figures for people, not for arithmetic."""
    return float(f"{value:.4g}")
