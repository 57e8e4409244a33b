"""A training stage from its plan: sources, train step, callbacks, the fit, the verdict.

``train_stage`` reads top to bottom as what a stage does: build a fresh model (or load
``init_from``), turn regularizers off where the stage is plain, build the train and val
sources, the optimizer and the step, hand ``engine.fit`` its callbacks (progress,
checkpoints, early stop, time budget, signals, metric passes, pictures), and judge the
curves it logged with the stage's gate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from dlsteps.config import StagePlan
from dlsteps.data.augment import augment_train, describe, resolve_entries
from dlsteps.data.items import CheckedCollate, IndexedItems, NamedItems, collate_of
from dlsteps.data.loading import FixedBatch, StepStream, pick_samples, workers
from dlsteps.errors import UserError
from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.judge.rules import overfit_reached
from dlsteps.judge.verdict import Findings, Verdict
from dlsteps.ladder.advice import TRY_CODES, tried_rates
from dlsteps.ladder.failures import step_error
from dlsteps.ladder.own_step import OwnStep, own_step
from dlsteps.ladder.project import Project
from dlsteps.ladder.stages import Stage
from dlsteps.logbook.curves import Row
from dlsteps.losses.baseline import measured_baseline, zeroed_input_baseline
from dlsteps.models.lightning import is_lightning
from dlsteps.observe.observer import StageObserver
from dlsteps.report.console import Reporter
from dlsteps.rundir.layout import LR_SWEEP_JSON
from dlsteps.rundir.run import StageDir
from dlsteps.tasks.base import Task
from dlsteps.train import adversarial, checkpoint, distributed, resume
from dlsteps.train.callbacks import EarlyStop, Interrupt, TimeBudget
from dlsteps.train.checkpoint import Trainables
from dlsteps.train.engine import (
    Callback,
    FitResult,
    FitSetup,
    Progress,
    StepFailed,
    Stop,
    StopReason,
    make_autocast,
)
from dlsteps.train.lightning import LightningEval, lightning_optimizers
from dlsteps.train.optim import disable_dropout, make_optimizer, make_scheduler
from dlsteps.train.steps import Evaluate, SupervisedStep, TrainStep
from dlsteps.train.threads import RunThreads
from dlsteps.train.user_step import UserEval, UserStep
from dlsteps.train.watch import HEALTH_SAMPLES, LayerHealth, NanWatch, UpdateWatch

BASELINE_VAL_ITEMS = 512  # val items the own step's zeroed-input baseline is scored on


@dataclass
class StageRun:
    """What one training stage gets from the run around it."""

    project: Project
    reporter: Reporter
    history: dict[str, Verdict]
    config_hash: str
    resuming: bool  # continue from the stage's checkpoint (``--resume``)
    stop_requested: Callable[[], bool] | None = None  # SIGINT/SIGTERM
    callbacks: Sequence[Callback] = field(default_factory=tuple)  # the caller's own
    threads: RunThreads | None = None  # torch's CPU threads, per stage where configured


class FirstBatch:
    """A train source that hands its first batch, as the model receives it, to ``see``."""

    def __init__(self, source: Any, see: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
        self.source = source
        self.see: Callable[[torch.Tensor, torch.Tensor], None] | None = see
        self.steps_per_epoch, self.indices = source.steps_per_epoch, source.indices

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stream = self.source.batches(start)
        if self.see is not None:
            first = next(stream)
            self.see(*first)
            self.see = None  # once: a NaN replay reads the stream again
            yield first
        yield from stream


class _Report(Callback):
    """Progress on the console at every flush."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def at_flush(self, progress: Progress) -> Stop | None:
        self.reporter.progress(progress)
        return None


def train_stage(
    ctx: StageRun, stage: Stage, plan: StagePlan, stage_dir: StageDir
) -> tuple[Verdict, list[str]]:
    """Assemble a training stage from its plan, fit it, and judge the curves it logged."""
    project, cfg, knobs = ctx.project, plan.config, plan.knobs
    task = project.task(plan)
    model = project.model(plan)
    notes: list[str] = _regularizers_off(model, plan) if stage.plain else []
    if ctx.threads is not None and (note := ctx.threads.for_stage(cfg.threads, workers(cfg.data))):
        notes.append(note)
    if knobs.init_from:
        source_dir = project.run.stage(knobs.init_from)
        _load_weights(model, source_dir, knobs.init_from)
        notes.append(f"weights initialised from the {knobs.init_from} checkpoint")
    # the weights the stage starts from, for advice tried from the very same start
    initial = copy.deepcopy(model.state_dict()) if stage.plain else None
    train_source, val_source = _sources(ctx, task, plan, stage.plain, notes)
    total = knobs.steps or (knobs.epochs or 1) * train_source.steps_per_epoch
    scheduler: Any
    if is_lightning(model):  # the module's own configure_optimizers
        optimizer, scheduler, said = lightning_optimizers(
            model, train_source.steps_per_epoch, stage.plain
        )
        notes += said
    else:
        optimizer = make_optimizer(model, cfg.optim, plain=stage.plain)
        scheduler = make_scheduler(optimizer, cfg.optim, total, plain=stage.plain)
    loss_fn = task.loss().to(project.device)
    autocast = make_autocast(project.device, cfg.precision)
    own = own_step(cfg, model)
    evaluate: Evaluate | None = None
    if own is not None:
        step: TrainStep = UserStep(
            own.step,
            distributed.wrap(model, project.device),
            optimizer,
            autocast,
            cfg.optim.grad_clip,
            _grad_scaler(project.device, cfg),
            logged=own.capture.take if own.capture is not None else None,
        )
        evaluate = (
            LightningEval(model, own.capture, autocast)
            if own.capture is not None
            else UserEval(own.step, model, autocast)
        )
        notes.append(f"train and val steps: {own.step.name}")
    else:
        step = _train_step(ctx, task, stage, plan, model, optimizer, loss_fn, autocast, notes)
    live = Trainables(model, optimizer, scheduler, getattr(step, "scaler", None), step)
    ckpts = resume.StageCheckpoints(
        stage_dir,
        ctx.config_hash,
        live,
        val_every=knobs.val_every,
        minutes=cfg.log.checkpoint_minutes,
        every=cfg.log.checkpoint_every,
    )
    point = ckpts.continue_from() if ctx.resuming else None
    start = point["step"] if point is not None else 0
    gate = knobs.gate
    callbacks: list[Callback] = [_Report(ctx.reporter), ckpts, *ctx.callbacks]
    if stage.plain and knobs.early_stop:
        # the gate's own rule; a resumed stage also sees the losses logged before its checkpoint
        logged = stage_dir.curves().get_curve("train/loss").values if point else ()
        callbacks.append(EarlyStop(gate.window, _reached(gate), primed=logged))
    if point is not None:
        notes.append(f"resumed after step {start} from its checkpoint")
    if gate.max_seconds is not None:
        callbacks.append(TimeBudget(gate.max_seconds))
    updates = UpdateWatch(model, optimizer) if start == 0 else None  # the first step only
    nans = None if distributed.active() else NanWatch(model, optimizer, scheduler)
    if nans is not None:
        callbacks.append(nans)
    setup = FitSetup(
        model=model,
        step=step,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        train=train_source,
        val=val_source,
        total_steps=total,
        device=project.device,
        val_every=knobs.val_every,
        autocast=autocast,
        flush_every=min(cfg.log.flush_every, gate.window) if stage.plain else cfg.log.flush_every,
        callbacks=callbacks,
        evaluate=evaluate,
    )
    if distributed.active():
        setup = distributed.adapt(setup)
        notes.append(distributed.describe(project.device))
    ctx.reporter.stage_started(stage.name, total, notes)
    try:
        result = _fit_logged(ctx, task, stage, plan, stage_dir, setup, ckpts, point, own)
    except StepFailed as failed:  # the user's model, loss or data raised inside the loop
        raise step_error(failed, model) from failed.__cause__
    finally:
        if updates is not None:
            updates.close()
    ckpts.save(result.last_step, finished=result.reason)
    findings = _findings(updates, nans, result, setup)
    stage_dir.write_findings(findings.to_json())
    curves = stage_dir.curves()
    primary = task.primary(cfg.metrics.primary)
    verdict = distributed.once(lambda: stage.judge(curves, gate, ctx.history, primary, findings))
    headline = next((d.code for d in verdict.diagnoses if d.severity == "fail"), None)
    tries = own is None and not distributed.active()  # the sweep trains the task's loss
    if initial is not None and headline in TRY_CODES and tries:
        assert isinstance(train_source, FixedBatch)
        tried = tried_rates(
            plan, model, initial, train_source, loss_fn, project.device, _reached(gate), total
        )
        if tried is not None:
            findings.details[headline] = tried.text(cfg.optim.lr)
            stage_dir.write_json(LR_SWEEP_JSON, {**tried.curve.to_json(), "tried": tried.results})
            stage_dir.write_findings(findings.to_json())
            notes.append(f"learning rates tried in {tried.seconds:.1f} s")
            verdict = stage.judge(curves, gate, ctx.history, primary, findings)
    verdict.figures["stopped"] = result.reason.value
    if result.reason is StopReason.PRUNED:
        verdict.status = "pruned"
        verdict.figures["pruned_at_step"] = result.last_step
        # a gate judged on a curve cut short by design would only report false failures
        verdict.diagnoses = [d for d in verdict.diagnoses if d.severity != "fail"]
        notes.append(f"pruned at step {result.last_step}: {result.message}")
    if result.reason is StopReason.TIME_BUDGET:
        notes.append(f"stopped at the wall-time budget of {gate.max_seconds:g} s")
    return verdict, notes


def _findings(
    updates: UpdateWatch | None, nans: NanWatch | None, result: FitResult, setup: FitSetup
) -> Findings:
    """What the watches saw: a first optimizer step that missed (or made) updates, and
    where a NaN was born (the state of the last good flush replayed to its step)."""
    findings = Findings(
        [Diagnosis("bad_update", f"{p}. {hint('bad_update')}", step=1) for p in updates.problems]
        if updates is not None
        else []
    )
    if result.reason is StopReason.NAN_LOSS and nans is not None and result.nan_step:
        origin = nans.replay(setup.step, setup.train, result.nan_step, setup.train.indices)
        if origin is not None:
            findings.details["nan_loss"] = origin
    return findings


def _reached(gate: Any) -> Callable[[Sequence[float]], bool]:
    """The overfit gate's rule as an early-stop test on the last ``window`` losses."""

    def reached(recent: Sequence[float]) -> bool:
        return overfit_reached(np.asarray(recent), gate.window, gate.train_loss_below) is not None

    return reached


def _sources(
    ctx: StageRun, task: Task, plan: StagePlan, plain: bool, notes: list[str]
) -> tuple[FixedBatch | StepStream, StepStream]:
    """The stage's train batches (its few samples held as one batch in the plain stages,
    the whole augmented train set otherwise) and the random val batches."""
    project, cfg, knobs = ctx.project, plan.config, plan.knobs
    train, val = project.datasets(plan)
    pairs = not cfg.own_batches  # the config's own step takes batches of any structure
    device = project.device
    pin = cfg.data.pin_memory if cfg.data.pin_memory is not None else device.type == "cuda"
    loading = {
        "num_workers": workers(cfg.data),
        "pin_memory": pin,
        "persistent_workers": cfg.data.persistent_workers,
        **distributed.shard(),
    }
    if plain:
        indices = pick_samples(len(train), knobs.samples or 1, cfg.seed)
        notes.append(f"train samples {indices} in one batch")
        source: FixedBatch | StepStream = FixedBatch(
            NamedItems(train, "train", pairs), indices, device
        )
    else:  # augmentation wraps the train set only: val stays the same for every stage
        entries = resolve_entries(knobs.augmentations, train)
        augmented = augment_train(
            train, entries, mask=task.dense_targets, ignore_index=cfg.data.ignore_index
        )
        if entries:
            notes.append(f"train-only augmentation: {describe(entries)}")
        elif knobs.augmentations == "auto":
            notes.append("no default augmentation for non-image inputs; set augmentations")
        source = StepStream(
            NamedItems(augmented, "train", pairs),
            distributed.per_rank_batch(cfg.data.batch_size, "data.batch_size"),
            cfg.seed,
            **loading,
        )
    val_key = "data.val_batch_size" if cfg.data.val_batch_size else "data.batch_size"
    val_source = StepStream(
        NamedItems(val, "val", pairs),
        distributed.per_rank_batch(cfg.data.val_batch_size or cfg.data.batch_size, val_key),
        cfg.seed + 1,
        split="val",
        **loading,
    )
    return source, val_source


def _train_step(
    ctx: StageRun,
    task: Task,
    stage: Stage,
    plan: StagePlan,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    autocast: Any,
    notes: list[str],
) -> TrainStep:
    """The per-step update: supervised (class-weighted train loss where asked, DDP-wrapped
    under --nproc), or the generator-plus-critic step of the adversarial stage."""
    project, cfg = ctx.project, plan.config
    if stage.kind == "adversarial":
        train, _ = project.datasets(plan)
        notes.append(
            f"critic {cfg.adversarial.critic.name}, {cfg.adversarial.critic_steps} "
            f"critic steps per generator step"
        )
        return adversarial.build_step(
            cfg, model, optimizer, loss_fn, train, project.device, autocast
        )
    # class weights shape the train loss only; val/loss stays comparable across stages
    weights = None
    if not stage.plain and plan.knobs.class_weights != "none":
        train, _ = project.datasets(plan)
        weights = task.class_weights(
            plan.knobs.class_weights, project.stats(plan), getattr(train, "num_classes", None)
        )
    train_loss_fn = loss_fn
    if weights is not None:
        train_loss_fn = task.loss(weights).to(project.device)
        shown = ", ".join(f"{w:.3g}" for w in weights)
        notes.append(f"class weights ({_spec(plan.knobs.class_weights)}): [{shown}]")
    return SupervisedStep(
        distributed.wrap(model, project.device),
        optimizer,
        train_loss_fn,
        autocast,
        cfg.optim.grad_clip,
        _grad_scaler(project.device, cfg),
    )


def _fit_logged(
    ctx: StageRun,
    task: Task,
    stage: Stage,
    plan: StagePlan,
    stage_dir: StageDir,
    setup: FitSetup,
    ckpts: resume.StageCheckpoints,
    point: dict[str, Any] | None,
    own: OwnStep | None = None,
) -> FitResult:
    """Run the loop into the stage's logbook, with what is logged beside the steps: the
    baseline, the observer's start, periodic and stage-end val passes and pictures."""
    project = ctx.project
    start = point["step"] if point is not None else 0
    # a resumed stage hides from TensorBoard what a killed attempt logged after the checkpoint
    with stage_dir.logbook(purge_step=start + 1 if start else None) as logbook:
        if not start:  # what the weight-decay rule reads (0 where the stage turned it off)
            decay = setup.optimizer.param_groups[0].get("weight_decay", 0.0)
            logbook.write([Row(0, "optim/weight_decay", float(decay))])
        if stage.logs_baseline and not start:
            rows = _baselines(project, task, plan, setup) if own is None else None
            logbook.write(rows if rows is not None else _own_baseline(project, plan, setup, own))
        observer, health = None, None
        if project.run.writes and own is not None:
            # the task's metrics and pictures read (input, target) batches; the layers'
            # health is measured through the config's own step
            health = _step_health(project, plan, setup.model, logbook, own)
            setup.callbacks = [*setup.callbacks, health]
        elif project.run.writes:  # full val metrics and pictures on the process that logs
            observer = StageObserver(
                plan,
                task,
                setup.model,
                project.datasets(plan),
                stage_dir,
                logbook,
                project.device,
                setup.autocast,
                project.stats(plan),
            )
            if not start:
                observer.start()
                setup.train = FirstBatch(setup.train, observer.first_batch)
            setup.callbacks = [*setup.callbacks, *observer.callbacks()]
            probe = next(iter(observer.loader))[0][:HEALTH_SAMPLES].to(project.device)
            health = LayerHealth(setup.model, probe, logbook)
            setup.callbacks = [*setup.callbacks, health]
        if ctx.stop_requested is not None:
            setup.callbacks = [*setup.callbacks, Interrupt(ctx.stop_requested)]
        result = resume.fit(setup, logbook, point)  # engine.fit, from the checkpoint if any
        if result.reason is StopReason.INTERRUPTED:
            if observer is not None:
                observer.close()
            raise ckpts.interrupted(result.last_step)
        # killed after its final checkpoint: the stage only needs judging
        if not resume.finished(point) and health is not None:
            health.measure(result.last_step)
        if not resume.finished(point) and observer is not None:
            # the stage-end metrics the gates compare
            observer.finish(result.last_step, worst=stage.shows_worst)
    return result


def _step_health(
    project: Project, plan: StagePlan, model: nn.Module, logbook: Any, own: OwnStep
) -> LayerHealth:
    """Layer health on the first val items, run through the config's own step (what a
    LightningModule logs on the way is dropped: it is no step of training)."""
    _, val = project.datasets(plan)
    count = min(HEALTH_SAMPLES, len(val))
    probe = FixedBatch(NamedItems(val, "val", pairs=False), list(range(count)), project.device)

    def forward(batch: Any) -> Any:
        out = own.step(model, batch)
        if own.capture is not None:
            own.capture.take()
        return out

    return LayerHealth(model, probe.batch, logbook, forward=forward)


def _baselines(project: Project, task: Task, plan: StagePlan, setup: FitSetup) -> list[Row]:
    """The input-independent predictor's val loss (a formula for the task's own loss, else
    the best constant output fitted) and, where the task has a closed form, its primary
    metric with the standard error at this val size (step 0)."""
    train, val = project.datasets(plan)
    stats = project.stats(plan)
    rows = []
    loss = task.baseline_loss(stats, getattr(train, "num_classes", None))
    if loss is None and task.resolved_loss is not None and not task.own_loss:
        loss = measured_baseline(
            setup.model, setup.loss_fn, train, val, project.device, plan.config.seed
        )
    if loss is not None:
        rows.append(Row(0, "baseline/val_loss", loss))
    name = task.primary(plan.config.metrics.primary).name
    if (metric := task.baseline_metric(stats, name)) is not None:
        rows += [Row(0, f"baseline/{name}", metric[0]), Row(0, f"baseline/{name}_se", metric[1])]
    return rows


def _own_baseline(
    project: Project, plan: StagePlan, setup: FitSetup, own: OwnStep | None
) -> list[Row]:
    """For the config's own step, where ``data.inputs`` names the inputs: the val loss of
    the model trained on zeroed inputs (none otherwise: the step's loss has no formula).
    The global RNG is left as it was, so the stage trains as it would without it."""
    cfg = plan.config
    if own is None or not cfg.data.inputs:
        return []
    train, val = project.datasets(plan)
    collate = CheckedCollate("train", collate_of(train))
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(
        IndexedItems(NamedItems(train, "train", pairs=False)),
        batch_size=cfg.data.batch_size,
        shuffle=True,
        generator=gen,
        collate_fn=collate,
    )
    kept = list(range(min(len(val), BASELINE_VAL_ITEMS)))
    val_loader = DataLoader(
        Subset(IndexedItems(NamedItems(val, "val", pairs=False)), kept),
        batch_size=cfg.data.val_batch_size or cfg.data.batch_size,
        collate_fn=CheckedCollate("val", collate_of(val)),
    )
    saved = checkpoint.rng_state()
    try:
        loss = zeroed_input_baseline(
            setup.model, own.step, train_loader, val_loader, cfg.data.inputs, project.device
        )
    finally:
        checkpoint.set_rng_state(saved)
        if own.capture is not None:
            own.capture.take()  # what the copy logged is no step of this stage
    return [Row(0, "baseline/val_loss", loss)] if loss is not None else []


def _spec(spec: Any) -> str:
    return "explicit" if isinstance(spec, list) else "median" if spec == "auto" else str(spec)


def _grad_scaler(device: torch.device, cfg: Any) -> torch.amp.GradScaler | None:
    """fp16 autocast needs loss scaling; bf16 and fp32 do not."""
    if device.type == "cuda" and cfg.precision == "16":
        return torch.amp.GradScaler("cuda")
    return None


def _regularizers_off(model: nn.Module, plan: StagePlan) -> list[str]:
    notes = []
    if (n := disable_dropout(model)) > 0:
        notes.append(f"dropout off in {n} layers")
    if plan.config.optim.weight_decay > 0:
        notes.append(f"weight decay {plan.config.optim.weight_decay:g} off")
    if plan.config.optim.scheduler.name != "none" or plan.config.optim.warmup_steps:
        notes.append("LR schedule off (constant LR)")
    if plan.knobs.augmentations:
        notes.append("augmentation off")
    return notes


def _load_weights(model: nn.Module, source: StageDir, stage: str) -> None:
    if not source.checkpoint.exists():
        raise UserError(
            f"init_from: no checkpoint of stage '{stage}' at {source.checkpoint}; "
            "run that stage first"
        )
    state = checkpoint.read(source.checkpoint, "init_from")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(
            f"init_from: the {stage} checkpoint does not fit this model: {exc}"
        ) from exc
