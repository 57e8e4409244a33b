"""What detection costs: preflight wall time and the per-step cost of the in-training checks.

    .venv/bin/python scripts/bench_checks.py [--config configs/seg.yaml] [--steps 60]

1. Preflight on the config, end to end as ``dlsteps check`` does it: build the data sets,
   the one data pass (hashes, label counts), the model, and every preflight check.
   Target: under 10 s on a CPU.
2. The checks the engine adds to each training step: the gradient norm (``grad/norm``),
   the output spread of the val batch (``diag/output_spread``) and the NaN check at flush
   (``math.isfinite`` on each copied-out value), and the checks run once per flush
   (``log.flush_every`` steps) counted per step: layer health (one forward on a fixed val
   batch, gradient norms per layer group, the weights' norm) and the state kept for a NaN
   replay; each timed on its own against the median time of a plain optimizer step
   (forward, loss, backward, update) on the same batch. Target: under 3 % together.
3. What runs once per stage or only when needed, in seconds: the first step's update
   check, the first-batch picture, full-data's highest-loss val pass, a NaN replay over
   one flush, and the learning rates tried for a failed overfit stage.

Exit code 1 when a target is missed. Figures are medians of interleaved repetitions;
on a busy machine absolute times drift, the ratio much less.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from dlsteps.config import load_config
from dlsteps.data.items import NamedItems
from dlsteps.data.loading import FixedBatch, StepStream, pick_samples
from dlsteps.data.registry import build_datasets
from dlsteps.data.stats import data_stats
from dlsteps.ladder.advice import tried_rates
from dlsteps.ladder.project import Project
from dlsteps.logbook.book import Logbook
from dlsteps.logbook.sinks import NullSink
from dlsteps.models.registry import build_model
from dlsteps.observe.observer import StageObserver
from dlsteps.preflight.checks import run_preflight
from dlsteps.rundir.run import RunDir
from dlsteps.tasks import make_task
from dlsteps.train.steps import SupervisedStep, grad_norm, output_spread
from dlsteps.train.watch import HEALTH_SAMPLES, LayerHealth, NanWatch, UpdateWatch

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

    flush_every = cfg.log.flush_every
    health = LayerHealth(model, vx[:HEALTH_SAMPLES], Logbook([NullSink()]))
    nans = NanWatch(model, opt)

    def health_check() -> None:  # once per flush
        health.measured = -1
        health.measure(1)

    def snapshot() -> None:  # once per flush
        nans._take(1)

    per_step = {"grad/norm": grad_check, "spread": spread_check, "nan": nan_check}
    per_flush = {"health": health_check, "nan snapshot": snapshot}
    times: dict[str, list[float]] = {"step": [], **{k: [] for k in (*per_step, *per_flush)}}
    plain_step()  # warm-up; also leaves gradients for grad_norm to read
    for _ in range(steps):
        times["step"].append(_timed(plain_step))
        for name, fn in per_step.items():
            times[name].append(_timed(fn))
        for name, fn in per_flush.items():
            times[name].append(_timed(fn) / flush_every)
    median = {k: statistics.median(v) for k, v in times.items()}
    checks = sum(median[k] for k in (*per_step, *per_flush))
    print(
        f"training step ({cfg.model.name}, batch {tuple(x.shape)}, "
        f"{torch.get_num_threads()} threads): median {median['step'] * 1e3:.2f} ms"
    )
    for name in (*per_step, *per_flush):
        share = median[name] / median["step"]
        every = f" (once per {flush_every} steps)" if name in per_flush else ""
        print(f"  {name:12s} {median[name] * 1e6:8.1f} us  {share:6.2%} of a step{every}")
    share = checks / median["step"]
    print(f"  all checks   {checks * 1e6:8.1f} us  {share:6.2%} of a step")
    return share


def bench_once(config_path: Path) -> None:
    """The checks that run once per stage, or only when a stage failed, timed on the
    config's own data and model (seconds)."""
    loaded = load_config(config_path)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp))
        project = Project(loaded, torch.device("cpu"))
        project.attach(run)
        plan = loaded.plans["overfit-few"]
        task = project.task(plan)
        train, val = project.datasets(plan)
        model = project.model(plan)
        opt = torch.optim.Adam(model.parameters(), lr=plan.config.optim.lr)
        loss_fn = task.loss()
        step = SupervisedStep(model, opt, loss_fn, contextlib.nullcontext())
        indices = pick_samples(len(train), plan.knobs.samples or 10, plan.config.seed)
        source = FixedBatch(NamedItems(train, "train"), indices)
        x, y = source.batch
        initial = copy.deepcopy(model.state_dict())
        stage_dir = run.stage("bench")
        with Logbook([NullSink()]) as book:
            observer = StageObserver(
                plan, task, model, (train, val), stage_dir, book, project.device
            )
            watch = UpdateWatch(model, opt)
            timings = {
                "update check (first step)": lambda: step(x, y),
                "first-batch picture": lambda: observer.first_batch(x, y),
                "highest-loss val pass": lambda: observer.worst(0),
            }
            for name, fn in timings.items():
                print(f"  {name:28s} {_timed(fn):6.2f} s")
            assert watch.done
            nans = NanWatch(model, opt)
            flush = plan.config.log.flush_every
            seconds = _timed(lambda: nans.replay(step, source, flush, source.indices))
            print(f"  {'NaN replay over one flush':28s} {seconds:6.2f} s ({flush} steps)")
            reached = lambda losses: len(losses) >= 10 and sum(losses[-10:]) / 10 < 1e-9  # noqa: E731
            steps = plan.knobs.steps or 500
            tried = tried_rates(
                plan, model, initial, source, loss_fn, project.device, reached, steps
            )
            print(
                f"  {'learning rates tried':28s} {tried.seconds:6.2f} s (range test + "
                f"{len(tried.results)} rates x up to {steps} steps; an impossible gate, so "
                "none reaches it: the worst case)"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/seg.yaml"))
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    seconds = bench_preflight(args.config)
    share = bench_step_checks(args.config, args.steps)
    print("once per stage, or only when needed:")
    bench_once(args.config)
    ok_pre, ok_checks = seconds < PREFLIGHT_BUDGET_S, share < CHECKS_BUDGET
    print(f"preflight < {PREFLIGHT_BUDGET_S:g} s: {'yes' if ok_pre else 'NO'}")
    print(f"per-step checks < {CHECKS_BUDGET:.0%}: {'yes' if ok_checks else 'NO'}")
    return 0 if ok_pre and ok_checks else 1


if __name__ == "__main__":
    sys.exit(main())
