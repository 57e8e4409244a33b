"""Climb the ladder: plan → engine (writes the logbook) → gate (reads it) → verdict → summary.

``run_ladder`` is the library entry point behind ``dlsteps run``/``stage``/``check``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import Dataset

from dlsteps import adversarial, checkpoint, distributed, engine, interrupts, resume
from dlsteps.atomic import write_json, write_text
from dlsteps.augment import augment_train, class_weights, describe, resolve_entries
from dlsteps.checkpoint import Trainables, config_hash
from dlsteps.components import build_datasets, build_model
from dlsteps.config import GateConfig, LoadedConfig, StagePlan, resolved_dict
from dlsteps.console import Reporter
from dlsteps.data.loading import FixedBatch, StepStream, pick_samples
from dlsteps.datastats import DataStats, data_stats
from dlsteps.errors import EXIT_GATE_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UserError
from dlsteps.faults import FirstStepGuard, NamedItems, as_user_error
from dlsteps.gates import Verdict, judge, overfit_reached
from dlsteps.image_quality import GenerativeViews
from dlsteps.logbook import Logbook, Row, read_curves
from dlsteps.losses import make_loss
from dlsteps.observe import StageObserver
from dlsteps.optim import disable_dropout, make_optimizer, make_scheduler
from dlsteps.preflight import exit_code_codes, run_preflight
from dlsteps.report import write_report
from dlsteps.stages import OVERFIT_STAGES, canonical_stage, ladder_for

SUMMARY = "summary.json"
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
    resume: Path | None = None  # a run directory to continue (``--resume``)
    # called at every logbook flush (e.g. an ablation's pruner); a returned non-empty reason
    # stops the stage, which is then recorded as ``pruned`` with that reason and step
    on_progress: Callable[[engine.Progress], str | None] | None = None
    # called after every optimizer step with its number (``dlsteps profile --trace`` steps
    # a torch.profiler schedule with it)
    on_step: Callable[[int], None] | None = None


@dataclass
class RunContext:
    loaded: LoadedConfig
    run_dir: Path
    device: torch.device
    reporter: Reporter
    options: RunOptions = field(default_factory=RunOptions)  # the caller's hooks among them
    history: dict[str, Verdict] = field(default_factory=dict)
    _datasets: dict[str, tuple[Dataset, Dataset]] = field(default_factory=dict)
    _stats: dict[str, DataStats] = field(default_factory=dict)
    config_hash: str = ""  # checkpoint.config_hash of the resolved config
    resuming: bool = False  # stages continue from their checkpoints (``--resume``)
    should_stop: Callable[[], bool] | None = None  # raised by SIGINT/SIGTERM

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
    if not distributed.is_main():
        return base  # a placeholder: rank 0's directory arrives through distributed.from_main
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
    device = distributed.init(resolve_device(opts.device or loaded.base.device))
    if distributed.active() and loaded.base.task == "generative":
        raise UserError(
            "--nproc: the generative task runs in one process (the adversarial stage's critic "
            "is not distributed)"
        )
    resolved = resolved_dict(loaded)
    digest = config_hash(resolved)
    previous: dict[str, Any] | None = None
    if opts.resume is not None:
        if opts.run_dir is not None:
            raise UserError("--resume continues the run in its own directory; drop --run-dir")
        run_dir = opts.resume
        previous = resume.open_run(run_dir, digest)
        if previous.get("selected") and not (opts.from_stage or opts.to_stage or opts.only):
            stages = list(previous["selected"])
    elif opts.run_dir is not None:
        run_dir = opts.run_dir
        if distributed.is_main() and run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(
                f"--run-dir {run_dir} exists and is not empty; choose another directory, "
                f"or continue it with --resume {run_dir}"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = new_run_dir(opts.runs_root, loaded.name)
    run_dir = distributed.from_main(run_dir)
    if previous is None:
        write_text(run_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    reporter = Reporter(quiet=opts.quiet or not distributed.is_main())
    reporter.every = loaded.base.log.progress_every
    ctx = RunContext(
        loaded,
        run_dir,
        device,
        reporter,
        options=opts,
        config_hash=digest,
        resuming=previous is not None,
    )
    summary: dict[str, Any] = {
        "status": "running",
        "config": loaded.source or "<built-in default>",
        "run_dir": str(run_dir),
        "name": loaded.name,
        "device": str(device),
        "started": datetime.now().isoformat(timespec="seconds"),
        "config_hash": digest,
        "selected": stages,
        "stages": [],
    }
    if previous is not None:
        summary["config"] = previous.get("config", summary["config"])
        summary["started"] = previous.get("started", summary["started"])
        summary["resumed"] = [*previous.get("resumed", []), resume.stamp()]
    reporter.message(f"dlsteps: run directory {run_dir} on {device}")
    with interrupts.graceful(reporter.message) as stop:
        ctx.should_stop = stop
        return _climb(ctx, summary, stages, opts, resume.finished_entries(previous))


def _climb(
    ctx: RunContext,
    summary: dict[str, Any],
    stages: Sequence[str],
    opts: RunOptions,
    finished: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any], int]:
    """The stages in order, until a failed gate (unless ``keep_going``), an error or a
    signal; a stage that ended before a ``--resume`` keeps its entry and verdict."""
    run_dir, reporter = ctx.run_dir, ctx.reporter
    exit_code = EXIT_OK
    order = [s.name for s in ladder_for(ctx.loaded.base.task)]
    for stage in order:  # finished stages outside this selection stay in the record
        if stage in finished and stage not in stages:
            summary["stages"].append(finished[stage])
            ctx.history[stage] = resume.stored_verdict(run_dir / stage, finished[stage])
    for stage in stages:
        if stage in finished:
            entry = finished[stage]
            summary["stages"].append(entry)
            verdict = resume.stored_verdict(run_dir / stage, entry)
            ctx.history[stage] = verdict
            reporter.message(f"[dim]▶ {stage}: {entry['status']} before the resume, kept[/dim]")
        else:
            verdict = _run_recorded(ctx, summary, stage)
            if verdict is None:
                return summary, EXIT_INTERRUPTED
        if verdict.status == "failed":
            codes = {d.code for d in verdict.diagnoses if d.severity == "fail"}
            exit_code = (
                EXIT_USAGE
                if stage == "preflight" and codes & set(exit_code_codes())
                else EXIT_GATE_FAILED
            )
            if not opts.keep_going:
                break
    summary["stages"].sort(key=lambda entry: order.index(entry["name"]))
    ran = [s["status"] for s in summary["stages"]]
    summary["status"] = "failed" if "failed" in ran else "pruned" if "pruned" in ran else "passed"
    _write_summary(run_dir, summary)
    reporter.table(summary)
    if distributed.is_main():
        reporter.message(f"report: {write_report(run_dir)[1]}")
    return summary, exit_code


def _run_recorded(ctx: RunContext, summary: dict[str, Any], stage: str) -> Verdict | None:
    """Run one stage and record it in the summary; ``None`` when a signal stopped it.

    A user's mistake found on the way (also one raised in a DataLoader worker, or a worker
    that crashed) is recorded as ``error`` and re-raised as one ``UserError``."""
    run_dir, reporter = ctx.run_dir, ctx.reporter
    entry: dict[str, Any] = {"name": stage, "status": "running"}
    summary["stages"].append(entry)
    _write_summary(run_dir, summary)  # after a kill -9 it names the stage that was running
    started = time.perf_counter()
    try:
        if ctx.should_stop is not None and ctx.should_stop():
            raise interrupts.Interrupted()
        verdict, notes = _run_stage(ctx, stage)
    except (KeyboardInterrupt, interrupts.Interrupted) as exc:
        entry.update(status="interrupted", seconds=round(time.perf_counter() - started, 3))
        if isinstance(exc, interrupts.Interrupted) and exc.step is not None:
            entry["step"] = exc.step
        summary["status"] = "interrupted"
        _write_summary(run_dir, summary)
        reporter.stage_finished(entry)
        reporter.message(f"interrupted; continue with: dlsteps run --resume {run_dir}")
        return None
    except Exception as exc:
        error = as_user_error(exc)
        if error is None:
            raise
        entry.update(
            status="error", seconds=round(time.perf_counter() - started, 3), error=str(error)
        )
        summary["status"] = "error"
        _write_summary(run_dir, summary)
        if error is exc:
            raise
        raise error from exc
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
    return verdict


def _write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(run_dir / SUMMARY, summary)


def _run_stage(ctx: RunContext, stage: str) -> tuple[Verdict, list[str]]:
    plan = ctx.loaded.plans[stage]
    stage_dir = ctx.run_dir / stage
    if distributed.is_main():
        stage_dir.mkdir(parents=True, exist_ok=True)
    if stage == "preflight":  # judged on rank 0 alone, like every gate
        verdict, notes = distributed.once(lambda: _preflight(ctx, plan)), []
    elif stage == "adversarial" and (refused := adversarial.refusal(ctx.history, ctx.run_dir)):
        ctx.reporter.message(f"[bold]▶ {stage}[/bold]: refused, the L1 stages must pass first")
        verdict, notes = refused, []
    elif stage == "scale-up" and not ctx.loaded.configured(stage):
        note = (
            "not configured: set stages.scale-up (a bigger model, dropout/batchnorm/LR decay "
            "back on, precision bf16 on a GPU) to run it"
        )
        ctx.reporter.message(f"[dim]▶ {stage}: skipped, {note}[/dim]")
        verdict, notes = Verdict("skipped"), [note]
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
    """Assemble a training stage from its plan, fit it, and judge the curves it logged."""
    cfg, knobs, stage = plan.config, plan.knobs, plan.stage
    model = ctx.model(plan)
    overfit = stage in OVERFIT_STAGES
    notes: list[str] = _regularizers_off(model, plan) if overfit else []
    if knobs.init_from:
        _load_weights(model, ctx.run_dir / knobs.init_from / resume.CHECKPOINT, knobs.init_from)
        notes.append(f"weights initialised from the {knobs.init_from} checkpoint")
    source, val_source = _sources(ctx, plan, overfit, notes)
    total = knobs.steps or (knobs.epochs or 1) * source.steps_per_epoch
    optimizer = make_optimizer(model, cfg.optim, plain=overfit)
    scheduler = make_scheduler(optimizer, cfg.optim, total, plain=overfit)
    loss_fn = make_loss(cfg.task, cfg.data.ignore_index).to(ctx.device)
    autocast = engine.make_autocast(ctx.device, cfg.precision)
    step = _train_step(ctx, plan, model, optimizer, loss_fn, autocast, overfit, notes)
    live = Trainables(model, optimizer, scheduler, getattr(step, "scaler", None), step)
    ckpts = resume.StageCheckpoints(
        stage_dir,
        stage,
        ctx.config_hash,
        live,
        val_every=knobs.val_every,
        minutes=cfg.log.checkpoint_minutes,
    )
    point = ckpts.continue_from() if ctx.resuming else None
    start = point["step"] if point is not None else 0
    gate = knobs.gate
    stop_check = _overfit_stop(gate) if overfit and knobs.early_stop else None
    if point is not None:
        stop_check = resume.primed(stop_check, stage_dir, gate.window)
        notes.append(f"resumed after step {start} from its checkpoint")
    setup = engine.FitSetup(
        model=model,
        step=FirstStepGuard(step),
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
        on_progress=_progress_hook(ctx.reporter, ckpts.at_flush, ctx.options.on_progress),
        on_checkpoint=ckpts.save,
        checkpoint_every=cfg.log.checkpoint_every,
        should_stop=ctx.should_stop,
    )
    if distributed.active():
        setup = distributed.adapt(setup)
        notes.append(distributed.describe(ctx.device))
    ctx.reporter.stage_started(stage, total, notes)
    result, observer = _fit_logged(ctx, plan, stage_dir, setup, ckpts, point)
    ckpts.save(result.last_step, finished=result.reason)
    curves = read_curves(stage_dir)
    verdict = distributed.once(lambda: judge(stage, curves, gate, ctx.history))
    if (primary := observer.primary.from_curves(curves)) is not None:
        verdict.figures["primary_metric"] = primary
    verdict.figures["stopped"] = result.reason
    if result.reason == "stopped" and result.message != distributed.TIME_BUDGET:
        # the caller's on_progress (an ablation pruner) said stop
        verdict.status = "pruned"
        verdict.figures["pruned_at_step"] = result.last_step
        # a gate judged on a curve cut short by design would only report false failures
        verdict.diagnoses = [d for d in verdict.diagnoses if d.severity != "fail"]
        notes.append(f"pruned at step {result.last_step}: {result.message}")
    if distributed.TIME_BUDGET in (result.reason, result.message):
        notes.append(f"stopped at the wall-time budget of {gate.max_seconds:g} s")
    return verdict, notes


def _sources(
    ctx: RunContext, plan: StagePlan, overfit: bool, notes: list[str]
) -> tuple[FixedBatch | StepStream, StepStream]:
    """The stage's train batches (its few samples held as one batch in the overfit stages,
    the whole augmented train set otherwise) and the random val batches."""
    cfg, knobs = plan.config, plan.knobs
    train, val = ctx.datasets(plan)
    pin = cfg.data.pin_memory if cfg.data.pin_memory is not None else ctx.device.type == "cuda"
    loading = {
        "num_workers": cfg.data.num_workers,
        "pin_memory": pin,
        "persistent_workers": cfg.data.persistent_workers,
        **distributed.shard(),
    }
    if overfit:
        indices = pick_samples(len(train), knobs.samples or 1, cfg.seed)
        notes.append(f"train samples {indices} in one batch")
        source: FixedBatch | StepStream = FixedBatch(
            NamedItems(train, "train"), indices, ctx.device
        )
    else:  # augmentation wraps the train set only: val stays the same for every stage
        entries = resolve_entries(knobs.augmentations, train)
        augmented = augment_train(train, entries, cfg.task, cfg.data.ignore_index)
        if entries:
            notes.append(f"train-only augmentation: {describe(entries)}")
        elif knobs.augmentations == "auto":
            notes.append("no default augmentation for non-image inputs; set augmentations")
        source = StepStream(
            NamedItems(augmented, "train"),
            distributed.per_rank_batch(cfg.data.batch_size, "data.batch_size"),
            cfg.seed,
            **loading,
        )
    val_key = "data.val_batch_size" if cfg.data.val_batch_size else "data.batch_size"
    val_source = StepStream(
        NamedItems(val, "val"),
        distributed.per_rank_batch(cfg.data.val_batch_size or cfg.data.batch_size, val_key),
        cfg.seed + 1,
        **loading,
    )
    return source, val_source


def _train_step(
    ctx: RunContext,
    plan: StagePlan,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    autocast: Any,
    overfit: bool,
    notes: list[str],
) -> engine.TrainStep:
    """The per-step update: supervised (class-weighted train loss where asked, DDP-wrapped
    under --nproc), or the generator-plus-critic step of the adversarial stage."""
    cfg = plan.config
    if plan.stage == "adversarial":
        train, _ = ctx.datasets(plan)
        notes.append(
            f"critic {cfg.adversarial.critic.name}, {cfg.adversarial.critic_steps} "
            f"critic steps per generator step"
        )
        return adversarial.build_step(cfg, model, optimizer, loss_fn, train, ctx.device, autocast)
    # class weights shape the train loss only; val/loss stays comparable across stages
    weights = None if overfit else _class_weights(ctx, plan)
    train_loss_fn = loss_fn
    if weights is not None:
        train_loss_fn = make_loss(cfg.task, cfg.data.ignore_index, weights).to(ctx.device)
        shown = ", ".join(f"{w:.3g}" for w in weights)
        notes.append(f"class weights ({_spec(plan.knobs.class_weights)}): [{shown}]")
    return engine.SupervisedStep(
        distributed.wrap(model, ctx.device),
        optimizer,
        train_loss_fn,
        autocast,
        cfg.optim.grad_clip,
        _grad_scaler(ctx.device, cfg),
    )


def _overfit_stop(gate: GateConfig) -> engine.StopCheck:
    """Stop an overfit stage as soon as its gate is met (the gate's own rule)."""

    def reached(recent: Any) -> bool:
        return overfit_reached(np.asarray(recent), gate.window, gate.train_loss_below) is not None

    return reached


def _fit_logged(
    ctx: RunContext,
    plan: StagePlan,
    stage_dir: Path,
    setup: engine.FitSetup,
    ckpts: resume.StageCheckpoints,
    point: dict[str, Any] | None,
) -> tuple[engine.FitResult, StageObserver]:
    """Run the loop into the stage's logbook, with what is logged beside the steps: the
    baseline, stage-start and stage-end val views, periodic metrics and pictures."""
    cfg, stage = plan.config, plan.stage
    train, val = ctx.datasets(plan)
    start = point["step"] if point is not None else 0
    # a resumed stage hides from TensorBoard what a killed attempt logged after the checkpoint
    with Logbook(stage_dir, purge_step=start + 1 if start else None) as logbook:
        if stage == "full-data" and not start:
            base = ctx.stats(plan).baseline_loss(
                cfg.task, getattr(train, "num_classes", None), cfg.data.ignore_index
            )
            if base is not None:
                logbook.write([Row(0, "baseline/val_loss", base)])
        views = None
        if cfg.task == "generative":  # full-val L1/PSNR and image grids, start and end
            batch = cfg.data.val_batch_size or cfg.data.batch_size
            views = GenerativeViews(setup.model, val, stage_dir, ctx.device, batch, setup.autocast)
            if not start:
                logbook.write(views.record(0))
        observer = StageObserver.for_stage(
            plan, setup.model, (train, val), stage_dir, logbook, ctx.device, setup.autocast
        )
        # full val metrics / pictures every N steps, on rank 0 (the one that logs)
        setup.every = observer.hooks() if distributed.is_main() else []
        if ctx.options.on_step is not None:
            setup.every.append((1, ctx.options.on_step))
        result = resume.fit(setup, logbook, point)  # engine.fit, from the checkpoint if any
        if result.reason == "interrupted":
            observer.close()
            raise ckpts.interrupted(result.last_step)
        # killed after its final checkpoint: the stage only needs judging
        if not resume.finished(point) and distributed.is_main():
            observer.finish(result.last_step)  # the stage-end metrics the gates compare
            if views is not None:
                logbook.write(views.record(result.last_step))
    return result, observer


def _class_weights(ctx: RunContext, plan: StagePlan) -> list[float] | None:
    """``class_weights`` resolved against the train label counts (``data_stats.json``)."""
    spec, cfg = plan.knobs.class_weights, plan.config
    if spec == "none" or cfg.task not in ("classification", "segmentation"):
        return None
    train, _ = ctx.datasets(plan)
    counts = ctx.stats(plan).train.label_counts
    labels = [k for k in counts if k != cfg.data.ignore_index or cfg.task != "segmentation"]
    num = getattr(train, "num_classes", None) or max(labels, default=0) + 1
    return class_weights(spec, counts, num)


def _spec(spec: Any) -> str:
    return "explicit" if isinstance(spec, list) else "median" if spec == "auto" else str(spec)


def _grad_scaler(device: torch.device, cfg: Any) -> torch.amp.GradScaler | None:
    """fp16 autocast needs loss scaling; bf16 and fp32 do not."""
    if device.type == "cuda" and cfg.precision == "16":
        return torch.amp.GradScaler("cuda")
    return None


def _progress_hook(
    reporter: Reporter,
    at_flush: Callable[[int], None],
    extra: Callable[[engine.Progress], str | None] | None = None,
):
    def hook(p: engine.Progress) -> str | None:
        reporter.progress(p)
        at_flush(p.step)  # right after a logbook flush: a consistent point for a timed checkpoint
        return extra(p) if extra is not None else None

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
    state = checkpoint.read(path, "init_from")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(
            f"init_from: the {stage} checkpoint does not fit this model: {exc}"
        ) from exc
