"""What detection costs: preflight wall time and the per-step cost of the in-training checks.

    .venv/bin/python scripts/bench_checks.py [--config configs/seg.yaml] [--steps 60]

1. Preflight on the config, end to end as ``dlsteps check`` does it: build the data sets,
   the one data pass (hashes, label counts), the model, and every preflight check.
   Target: under 10 s on a CPU.
2. The checks the engine adds to each training step: the gradient norm (``grad/norm``),
   the output spread of the val batch (``diag/output_spread``) and the NaN check at flush
   (``math.isfinite`` on each copied-out value), each timed on its own against the median
   time of a plain optimizer step (forward, loss, backward, update) on the same batch.
   Target: under 3 % together.

Exit code 1 when a target is missed. Figures are medians of interleaved repetitions;
on a busy machine absolute times drift, the ratio much less.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from dlsteps.config import load_config
from dlsteps.data.loading import StepStream
from dlsteps.data.registry import build_datasets
from dlsteps.data.stats import data_stats
from dlsteps.models.registry import build_model
from dlsteps.preflight.checks import run_preflight
from dlsteps.tasks import make_task
from dlsteps.train.steps import grad_norm, output_spread

PREFLIGHT_BUDGET_S = 10.0
CHECKS_BUDGET = 0.03


def bench_preflight(config_path: Path) -> float:
    cfg = load_config(config_path).plans["preflight"].config
    device = torch.device("cpu")
    started = time.perf_counter()
    train, val = build_datasets(cfg.data.name, cfg.data.args, cfg.seed)
    task = make_task(cfg)
    stats = data_stats(train, val, labels=task.counts_labels, seed=cfg.seed)
    implied = {"in_channels": getattr(train, "in_channels", None)}
    implied["num_classes"] = getattr(train, "num_classes", None)
    model = build_model(cfg.model.name, cfg.model.args, implied)
    verdict = run_preflight(model, task.loss(), train, val, stats, cfg, device, task)
    seconds = time.perf_counter() - started
    print(f"preflight on {config_path}: {seconds:.2f} s, status {verdict.status}")
    return seconds


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_step_checks(config_path: Path, steps: int) -> float:
    cfg = load_config(config_path).plans["full-data"].config
    torch.manual_seed(cfg.seed)
    train, val = build_datasets(cfg.data.name, cfg.data.args, cfg.seed)
    implied = {"in_channels": getattr(train, "in_channels", None)}
    implied["num_classes"] = getattr(train, "num_classes", None)
    model = build_model(cfg.model.name, cfg.model.args, implied)
    loss_fn = make_task(cfg).loss()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    params = [p for p in model.parameters() if p.requires_grad]
    x, y = next(StepStream(train, cfg.data.batch_size, cfg.seed).batches())
    vx, _ = next(StepStream(val, cfg.data.batch_size, cfg.seed + 1).batches())
    with torch.no_grad():
        val_out = model(vx)
    values = [float(i) for i in range(8)]  # the ~8 values one step logs, checked at flush

    def plain_step() -> None:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def grad_check() -> None:
        grad_norm(params, None).item()  # .item(): on a GPU this would wait for the norm

    def spread_check() -> None:
        output_spread(val_out).item()

    def nan_check() -> None:
        all(math.isfinite(v) for v in values)

    times: dict[str, list[float]] = {"step": [], "grad/norm": [], "spread": [], "nan": []}
    plain_step()  # warm-up; also leaves gradients for grad_norm to read
    for _ in range(steps):
        times["step"].append(_timed(plain_step))
        times["grad/norm"].append(_timed(grad_check))
        times["spread"].append(_timed(spread_check))
        times["nan"].append(_timed(nan_check))
    median = {k: statistics.median(v) for k, v in times.items()}
    checks = median["grad/norm"] + median["spread"] + median["nan"]
    print(
        f"training step ({cfg.model.name}, batch {tuple(x.shape)}, "
        f"{torch.get_num_threads()} threads): median {median['step'] * 1e3:.2f} ms"
    )
    for name in ("grad/norm", "spread", "nan"):
        share = median[name] / median["step"]
        print(f"  {name:10s} {median[name] * 1e6:8.1f} us  {share:6.2%} of a step")
    share = checks / median["step"]
    print(f"  all checks {checks * 1e6:8.1f} us  {share:6.2%} of a step")
    return share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/seg.yaml"))
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    seconds = bench_preflight(args.config)
    share = bench_step_checks(args.config, args.steps)
    ok_pre, ok_checks = seconds < PREFLIGHT_BUDGET_S, share < CHECKS_BUDGET
    print(f"preflight < {PREFLIGHT_BUDGET_S:g} s: {'yes' if ok_pre else 'NO'}")
    print(f"per-step checks < {CHECKS_BUDGET:.0%}: {'yes' if ok_checks else 'NO'}")
    return 0 if ok_pre and ok_checks else 1


if __name__ == "__main__":
    sys.exit(main())
