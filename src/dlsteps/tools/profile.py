"""``dlsteps profile CONFIG``: a short run of one training stage, for its speed report.

    dlsteps profile configs/seg.yaml                     # 50 steps of full-data
    dlsteps profile configs/seg.yaml --steps 100 --set data.num_workers=2
    dlsteps profile configs/seg.yaml --trace             # + a torch.profiler trace
    tensorboard --logdir runs/<run>/full-data/trace      # plugin: pip install -e '.[bench]'

The stage runs as ``dlsteps stage`` would run it (same loader, engine and logging), cut
to ``steps`` optimizer steps with early stopping off; its gate is judged but beside the
point. ``--trace`` records a few steps from the middle of the run with ``torch.profiler``
(CPU, and CUDA kernels on a GPU) into ``<run_dir>/<stage>/trace/*.pt.trace.json``, which
TensorBoard's PyTorch profiler plugin, Perfetto (ui.perfetto.dev) or chrome://tracing
open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, schedule, tensorboard_trace_handler

from dlsteps.config import load_config
from dlsteps.errors import EXIT_INTERRUPTED, UserError
from dlsteps.ladder.runner import RunOptions, resolve_device, run_ladder
from dlsteps.ladder.stages import TRAINING_STAGES, canonical_stage
from dlsteps.rundir.run import RunDir
from dlsteps.train.callbacks import Periodic

TRACE_WARMUP = 2  # profiler steps recorded and thrown away before the traced ones
TRACE_ACTIVE = 10


@dataclass
class Profile:
    stage: str
    steps: int
    run_dir: Path
    status: str  # the stage's status in summary.json
    figures: dict[str, Any]  # the stage's verdict figures; the report is under "speed"
    trace_dir: Path | None = None
    top_ops: str | None = None  # torch.profiler's table of the most expensive ops

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


def profile(
    config: Path | None,
    sets: Sequence[str] = (),
    stage: str = "full-data",
    steps: int = 50,
    trace: bool = False,
    run_dir: Path | None = None,
    device: str | None = None,
) -> Profile:
    """Run ``steps`` steps of ``stage`` and return its speed figures (and trace)."""
    stage = canonical_stage(stage, "--stage")
    if stage not in TRAINING_STAGES:
        raise UserError(f"--stage {stage}: only a training stage can be profiled")
    if trace and steps < TRACE_WARMUP + 3:
        raise UserError(f"--trace needs --steps of at least {TRACE_WARMUP + 3}, got {steps}")
    loaded = load_config(
        config, [*sets, f"stages.{stage}.steps={steps}", f"stages.{stage}.early_stop=false"]
    )
    if run_dir is None:
        run_dir = RunDir.new(Path("runs"), f"{loaded.name}-profile").path
    opts = RunOptions(only=[stage], run_dir=run_dir, device=device, quiet=True)
    trace_dir = RunDir(run_dir).stage(stage).trace if trace else None
    profiler: Any = contextlib.nullcontext()
    if trace_dir is not None:
        cuda = resolve_device(device or loaded.base.device).type == "cuda"
        wait = max(0, min(steps // 2, steps - TRACE_WARMUP - TRACE_ACTIVE))
        active = min(TRACE_ACTIVE, steps - wait - TRACE_WARMUP)
        profiler = torch.profiler.profile(
            activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []),
            schedule=schedule(wait=wait, warmup=TRACE_WARMUP, active=active, repeat=1),
            on_trace_ready=tensorboard_trace_handler(str(trace_dir)),
            record_shapes=True,
        )
    with profiler as prof:
        if prof is not None:
            opts.callbacks = [Periodic(1, lambda _step: prof.step())]
        summary, code = run_ladder(loaded, opts)
    entry = summary["stages"][-1]
    status = "interrupted" if code == EXIT_INTERRUPTED else entry["status"]
    top_ops = None
    if prof is not None and prof.profiler is not None:
        sort = "self_cuda_time_total" if ProfilerActivity.CUDA in prof.activities else None
        top_ops = prof.key_averages().table(sort_by=sort or "self_cpu_time_total", row_limit=12)
    return Profile(stage, steps, run_dir, status, entry.get("figures", {}), trace_dir, top_ops)
