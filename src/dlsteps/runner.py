"""Climb the ladder: plan → engine (writes the logbook) → gate (reads it) → verdict → summary.

``run_ladder`` is the library entry point behind ``dlsteps run``/``stage``/``check``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import Dataset

from dlsteps import engine
from dlsteps.atomic import save_torch, write_json, write_text
from dlsteps.components import build_datasets, build_model
from dlsteps.config import LoadedConfig, StagePlan, resolved_dict
from dlsteps.console import Reporter
from dlsteps.data.loading import FixedBatch, StepStream, pick_samples
from dlsteps.datastats import DataStats, data_stats
from dlsteps.errors import EXIT_GATE_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UserError
from dlsteps.gates import GATES, Verdict, judge, overfit_reached
from dlsteps.logbook import Logbook, Row, read_curves
from dlsteps.losses import make_loss
from dlsteps.optim import disable_dropout, make_optimizer, make_scheduler
from dlsteps.preflight import exit_code_codes, run_preflight
from dlsteps.stages import OVERFIT_STAGES, canonical_stage, ladder_for

SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
VERDICT = "verdict.json"


@dataclass
class RunOptions:
    from_stage: str | None = None
    to_stage: str | None = None
    only: Sequence[str] = ()
    run_dir: Path | None = None
    device: str | None = None
    keep_going: bool = False
    quiet: bool = False
    runs_root: Path = Path("runs")


@dataclass
class RunContext:
    loaded: LoadedConfig
    run_dir: Path
    device: torch.device
    reporter: Reporter
    history: dict[str, Verdict] = field(default_factory=dict)
    _datasets: dict[str, tuple[Dataset, Dataset]] = field(default_factory=dict)
    _stats: dict[str, DataStats] = field(default_factory=dict)

    def datasets(self, plan: StagePlan) -> tuple[Dataset, Dataset]:
        key = _data_key(plan)
        if key not in self._datasets:
            cfg = plan.config
            self._datasets[key] = build_datasets(cfg.data.name, cfg.data.args, cfg.seed)
        return self._datasets[key]

    def stats(self, plan: StagePlan) -> DataStats:
        key = _data_key(plan)
        if key not in self._stats:
            train, val = self.datasets(plan)
            cache = self.run_dir if key == _data_key(self.loaded.plans["preflight"]) else None
            cfg = plan.config
            self._stats[key] = data_stats(
                train, val, cfg.task, cfg.data.num_workers, cfg.seed, cache
            )
        return self._stats[key]

    def model(self, plan: StagePlan) -> nn.Module:
        train, _ = self.datasets(plan)
        implied = {
            "in_channels": getattr(train, "in_channels", None),
            "num_classes": getattr(train, "num_classes", None),
        }
        _seed_everything(plan.config.seed)
        return build_model(plan.config.model.name, plan.config.model.args, implied).to(self.device)


def _data_key(plan: StagePlan) -> str:
    d = plan.config.data
    return repr((d.name, sorted(d.args.items()), plan.config.seed))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device: '{requested}' requested but CUDA is not available here")
    if requested.startswith("cuda:") and int(requested[5:]) >= torch.cuda.device_count():
        raise UserError(
            f"device: '{requested}' requested but only {torch.cuda.device_count()} GPU(s) exist"
        )
    return torch.device(requested)


def new_run_dir(root: Path, name: str) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``, with a ``-2``, ``-3``... suffix if taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{name}-{stamp}"
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


def select_stages(task: str, opts: RunOptions) -> list[str]:
    names = [s.name for s in ladder_for(task)]
    if opts.only:
        wanted = [canonical_stage(s, "--stage") for s in opts.only]
        return [n for n in names if n in wanted]
    start = names.index(canonical_stage(opts.from_stage, "--from")) if opts.from_stage else 0
    stop = names.index(canonical_stage(opts.to_stage, "--to")) if opts.to_stage else len(names) - 1
    if start > stop:
        raise UserError(f"--from {opts.from_stage} comes after --to {opts.to_stage} in the ladder")
    return names[start : stop + 1]


def run_ladder(loaded: LoadedConfig, opts: RunOptions) -> tuple[dict[str, Any], int]:
    """Run the selected stages; returns the summary and the exit code."""
    stages = select_stages(loaded.base.task, opts)
    device = resolve_device(opts.device or loaded.base.device)
    if opts.run_dir is not None:
        run_dir = opts.run_dir
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(
                f"--run-dir {run_dir} exists and is not empty; choose another directory"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = new_run_dir(opts.runs_root, loaded.name)
    write_text(run_dir / "config.yaml", yaml.safe_dump(resolved_dict(loaded), sort_keys=False))
    reporter = Reporter(quiet=opts.quiet)
    reporter.every = loaded.base.log.progress_every
    ctx = RunContext(loaded, run_dir, device, reporter)
    summary: dict[str, Any] = {
        "status": "running",
        "config": loaded.source or "<built-in default>",
        "run_dir": str(run_dir),
        "name": loaded.name,
        "device": str(device),
        "started": datetime.now().isoformat(timespec="seconds"),
        "stages": [],
    }
    reporter.message(f"dlsteps: run directory {run_dir} on {device}")
    exit_code = EXIT_OK
    for stage in stages:
        entry: dict[str, Any] = {"name": stage, "status": "running"}
        summary["stages"].append(entry)
        started = time.perf_counter()
        try:
            verdict, notes = _run_stage(ctx, stage)
        except KeyboardInterrupt:
            entry.update(status="interrupted", seconds=round(time.perf_counter() - started, 3))
            summary["status"] = "interrupted"
            _write_summary(run_dir, summary)
            reporter.stage_finished(entry)
            return summary, EXIT_INTERRUPTED
        except UserError as exc:
            entry.update(
                status="error", seconds=round(time.perf_counter() - started, 3), error=str(exc)
            )
            summary["status"] = "error"
            _write_summary(run_dir, summary)
            raise
        entry.update(
            status=verdict.status,
            seconds=round(time.perf_counter() - started, 3),
            diagnoses=[d.to_json() for d in verdict.diagnoses],
            figures=verdict.figures,
            notes=notes,
        )
        ctx.history[stage] = verdict
        _write_summary(run_dir, summary)
        reporter.stage_finished(entry)
        if verdict.status == "failed":
            codes = {d.code for d in verdict.diagnoses if d.severity == "fail"}
            exit_code = (
                EXIT_USAGE
                if stage == "preflight" and codes & set(exit_code_codes())
                else EXIT_GATE_FAILED
            )
            if not opts.keep_going:
                break
    ran = [s["status"] for s in summary["stages"]]
    summary["status"] = "failed" if "failed" in ran else "passed"
    _write_summary(run_dir, summary)
    reporter.table(summary)
    return summary, exit_code


def _write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(run_dir / SUMMARY, summary)


def _run_stage(ctx: RunContext, stage: str) -> tuple[Verdict, list[str]]:
    plan = ctx.loaded.plans[stage]
    stage_dir = ctx.run_dir / stage
    stage_dir.mkdir(parents=True, exist_ok=True)
    if stage == "preflight":
        verdict, notes = _preflight(ctx, plan), []
    elif stage not in GATES:
        ctx.reporter.message(f"[dim]▶ {stage}: not available yet, skipped[/dim]")
        verdict, notes = Verdict("skipped"), [f"the {stage} stage is not implemented yet"]
    else:
        verdict, notes = _train_stage(ctx, plan, stage_dir)
    write_json(
        stage_dir / VERDICT,
        {
            "name": stage,
            "status": verdict.status,
            "diagnoses": [d.to_json() for d in verdict.diagnoses],
            "figures": verdict.figures,
            "notes": notes,
        },
    )
    return verdict, notes


def _preflight(ctx: RunContext, plan: StagePlan) -> Verdict:
    ctx.reporter.message("[bold]▶ preflight[/bold]")
    train, val = ctx.datasets(plan)
    stats = ctx.stats(plan)
    model = ctx.model(plan)
    loss_fn = make_loss(plan.config.task, plan.config.data.ignore_index).to(ctx.device)
    return run_preflight(model, loss_fn, train, val, stats, plan.config, ctx.device)


def _train_stage(ctx: RunContext, plan: StagePlan, stage_dir: Path) -> tuple[Verdict, list[str]]:
    cfg, knobs, stage = plan.config, plan.knobs, plan.stage
    train, val = ctx.datasets(plan)
    model = ctx.model(plan)
    overfit = stage in OVERFIT_STAGES
    notes: list[str] = []
    if overfit:
        notes += _regularizers_off(model, plan)
    if knobs.init_from:
        _load_weights(model, ctx.run_dir / knobs.init_from / CHECKPOINT, knobs.init_from)
        notes.append(f"weights initialised from the {knobs.init_from} checkpoint")
    pin = cfg.data.pin_memory if cfg.data.pin_memory is not None else ctx.device.type == "cuda"
    if overfit:
        indices = pick_samples(len(train), knobs.samples or 1, cfg.seed)
        source: Any = FixedBatch(train, indices)
        notes.append(f"train samples {indices} in one batch")
    else:
        source = StepStream(
            train, cfg.data.batch_size, cfg.seed, num_workers=cfg.data.num_workers, pin_memory=pin
        )
    val_source = StepStream(
        val,
        cfg.data.val_batch_size or cfg.data.batch_size,
        cfg.seed + 1,
        num_workers=cfg.data.num_workers,
        pin_memory=pin,
    )
    total = knobs.steps or (knobs.epochs or 1) * source.steps_per_epoch
    optimizer = make_optimizer(model, cfg.optim, plain=overfit)
    scheduler = make_scheduler(optimizer, cfg.optim, total, plain=overfit)
    loss_fn = make_loss(cfg.task, cfg.data.ignore_index).to(ctx.device)
    gate = knobs.gate
    stop_check = None
    if overfit and knobs.early_stop:

        def stop_check(recent: Any) -> bool:
            return (
                overfit_reached(np.asarray(recent), gate.window, gate.train_loss_below) is not None
            )

    autocast = engine.make_autocast(ctx.device, cfg.precision)
    setup = engine.FitSetup(
        model=model,
        step=engine.SupervisedStep(
            model, optimizer, loss_fn, autocast, cfg.optim.grad_clip, _grad_scaler(ctx.device, cfg)
        ),
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        train=source,
        val=val_source,
        total_steps=total,
        device=ctx.device,
        val_every=knobs.val_every,
        autocast=autocast,
        flush_every=min(cfg.log.flush_every, gate.window) if overfit else cfg.log.flush_every,
        max_seconds=gate.max_seconds,
        stop_check=stop_check,
        stop_window=gate.window,
        on_progress=_progress_hook(ctx.reporter),
    )
    ctx.reporter.stage_started(stage, total, notes)
    with Logbook(stage_dir) as logbook:
        if stage == "full-data":
            stats = ctx.stats(plan)
            base = stats.baseline_loss(
                cfg.task, getattr(train, "num_classes", None), cfg.data.ignore_index
            )
            if base is not None:
                logbook.write([Row(0, "baseline/val_loss", base)])
        result = engine.fit(setup, logbook)
    save_torch(
        stage_dir / CHECKPOINT,
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": result.last_step,
        },
    )
    verdict = judge(stage, read_curves(stage_dir), gate, ctx.history)
    verdict.figures["stopped"] = result.reason
    if result.reason == "time_budget":
        notes.append(f"stopped at the wall-time budget of {gate.max_seconds:g} s")
    return verdict, notes


def _grad_scaler(device: torch.device, cfg: Any) -> torch.amp.GradScaler | None:
    """fp16 autocast needs loss scaling; bf16 and fp32 do not."""
    if device.type == "cuda" and cfg.precision == "16":
        return torch.amp.GradScaler("cuda")
    return None


def _progress_hook(reporter: Reporter):
    def hook(p: engine.Progress) -> None:
        reporter.progress(p)

    return hook


def _regularizers_off(model: nn.Module, plan: StagePlan) -> list[str]:
    notes = []
    if (n := disable_dropout(model)) > 0:
        notes.append(f"dropout off in {n} layers")
    if plan.config.optim.weight_decay > 0:
        notes.append(f"weight decay {plan.config.optim.weight_decay:g} off")
    if plan.config.optim.scheduler != "none" or plan.config.optim.warmup_steps:
        notes.append("LR schedule off (constant LR)")
    if plan.knobs.augmentations:
        notes.append("augmentation off")
    return notes


def _load_weights(model: nn.Module, path: Path, stage: str) -> None:
    if not path.exists():
        raise UserError(
            f"init_from: no checkpoint of stage '{stage}' at {path}; run that stage first"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(
            f"init_from: the {stage} checkpoint does not fit this model: {exc}"
        ) from exc
