"""The speed report: figures from logged timings, and the bottleneck it names."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from dlsteps.judge.speed import format_speed, speed_figures
from dlsteps.logbook.curves import Curve, Curves


def _curves(data_ms: list[float], compute_ms: list[float], **per_flush: list[float]) -> Curves:
    steps = np.arange(1, len(data_ms) + 1)
    curves = Curves(
        {
            "time/data": Curve(steps, np.asarray(data_ms) / 1e3),
            "time/compute": Curve(steps, np.asarray(compute_ms) / 1e3),
        }
    )
    flushes = steps[9::10]
    for tag, values in per_flush.items():
        curves[tag.replace("__", "/")] = Curve(flushes, np.asarray(values, dtype=float))
    return curves


def test_figures_come_from_the_logged_timings() -> None:
    data = [1.0] * 10 + [3.0] * 10  # ms
    compute = [20.0] * 19 + [200.0]
    figures = speed_figures(
        _curves(
            data,
            compute,
            time__steps_per_s=[40.0, 40.0],
            time__samples_per_s=[640.0, 640.0],
            mem__host_peak_mb=[700.0, 750.0],
        ),
        max_batch_seconds=1.0,
    )
    speed = figures["speed"]
    assert speed["data_ms"] == {"median": 2.0, "p90": 3.0}
    assert speed["compute_ms"]["median"] == 20.0
    assert speed["compute_ms"]["p90"] == pytest.approx(20.0)
    assert speed["step_ms"]["median"] == pytest.approx(22.0)
    assert speed["samples_per_s"] == 640.0 and speed["host_peak_mb"] == 750.0
    assert "device_peak_mb" not in speed  # only CUDA runs log device memory
    assert speed["bottleneck"] == "compute"
    assert any("CPU" in line for line in speed["advice"])
    assert figures["median_batch_seconds"] == pytest.approx(0.022)
    # 20 steps at 40 steps/s is 0.5 s of wall time, 0.6 s inside steps: nothing outside
    assert speed["other_share"] == 0.0


def test_waiting_more_than_half_a_step_is_data_bound_with_advice() -> None:
    speed = speed_figures(_curves([30.0] * 20, [10.0] * 20, mem__device_peak_mb=[512.0] * 2))
    speed = speed["speed"]
    assert speed["bottleneck"] == "data" and speed["data_share"] == 0.75
    assert "num_workers" in speed["advice"][0]
    assert any("pin_memory" in line for line in speed["advice"])  # a GPU ran: device memory


def test_slow_steps_and_time_outside_steps_are_called_out() -> None:
    # 2 s steps, but the wall clock says 0.25 steps/s: half the time is spent elsewhere
    speed = speed_figures(_curves([5.0] * 20, [2000.0] * 20, time__steps_per_s=[0.25] * 2), 1.0)
    advice = speed["speed"]["advice"]
    assert "slow_batch" in advice[0]
    assert speed["speed"]["other_share"] == pytest.approx(1 - 2.005 / 4, abs=1e-3)
    assert any("flush_every" in line for line in advice)
    lines = format_speed(speed)
    assert lines[0].startswith("speed (median / p90): data 5.00 / 5.00 ms")
    assert "bottleneck: compute" in lines[1]


def test_no_timings_no_report() -> None:
    assert speed_figures(Curves()) == {}
    assert format_speed({}) == []


SLOW_DATA = textwrap.dedent(
    '''
    """A data set whose items take SECONDS each to read, like slow decoding from disk."""
    import time

    import torch
    from torch.utils.data import Dataset


    class Slow(Dataset):
        num_classes = 3
        in_channels = 3

        def __init__(self, n, seconds, seed):
            gen = torch.Generator().manual_seed(seed)
            self.x = torch.randn(n, 3, 16, 16, generator=gen)
            self.y = torch.randint(0, 3, (n, 16, 16), generator=gen)
            self.seconds = seconds

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            time.sleep(self.seconds)
            return self.x[i], self.y[i]


    def slow(num_train=128, num_val=64, seconds=0.004, seed=0):
        return Slow(num_train, seconds, seed), Slow(num_val, seconds, seed + 1)
    '''
)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
def test_a_sleeping_loader_is_data_bound_until_workers_hide_it(
    tmp_path: Path, cli: Callable[..., object]
) -> None:
    """8 items of 4 ms: 32 ms to load a batch in the main process against a few ms of
    compute. With 8 workers per loader a batch arrives every ~4 ms, so the step waits on
    the model instead (both sides hold with compute anywhere from 2 to 60 ms)."""
    (tmp_path / "slow_data.py").write_text(SLOW_DATA)
    config = {
        "task": "segmentation",
        "data": {"name": "slow_data:slow", "batch_size": 8, "num_workers": 0},
        "model": {"name": "tiny_unet", "args": {"width": 8}},
    }
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump(config))

    def bottleneck(workers: int) -> tuple[dict, str]:
        run_dir = tmp_path / f"workers-{workers}"
        args = ["--steps", "24", "--run-dir", run_dir, "--set", f"data.num_workers={workers}"]
        result = cli("profile", "slow.yaml", *args, cwd=tmp_path)
        assert result.code == 0, result.err
        summary = json.loads((run_dir / "summary.json").read_text())
        return summary["stages"][-1]["figures"]["speed"], result.out

    speed, out = bottleneck(0)
    assert speed["bottleneck"] == "data" and speed["data_share"] > 0.5, speed
    assert "bottleneck: data" in out and "raise data.num_workers" in out

    speed, out = bottleneck(8)
    assert speed["bottleneck"] == "compute" and speed["data_share"] < 0.5, speed
    assert "bottleneck: compute" in out


@pytest.mark.slow
def test_profile_trace_is_a_torch_profiler_trace(
    tmp_path: Path, cli: Callable[..., object], write_config: Callable[..., Path]
) -> None:
    config = write_config()
    run_dir = tmp_path / "run"
    args = ["--stage", "overfit-1", "--steps", "8", "--trace", "--run-dir", run_dir]
    result = cli("profile", config, *args)
    assert result.code == 0, result.err
    assert "bottleneck:" in result.out and "aten::" in result.out  # report, top ops
    (trace,) = (run_dir / "overfit-one" / "trace").glob("*.pt.trace.json")
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name", "").startswith("aten::convolution") for e in events)
    # early stopping is off: the stage ran the steps it was given
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stages"][-1]["figures"]["speed"]["steps_timed"] == 8


def test_profile_rejects_a_stage_that_does_not_train(
    cli: Callable[..., object], write_config: Callable[..., Path]
) -> None:
    result = cli("profile", write_config(), "--stage", "preflight")
    assert result.code == 2 and "only a training stage" in result.err
