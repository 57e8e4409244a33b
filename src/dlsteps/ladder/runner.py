"""Climb the ladder: plan → engine (writes the logbook) → gate (reads it) → verdict → summary.

``run_ladder`` is the library entry point behind ``dlsteps run``/``stage``/``check``. It
loops over the stage records of the task's ladder; what a stage does is its record's
(``ladder.stages``): checked (preflight), refused until its prerequisites passed,
skipped until configured, or trained (``ladder.training``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlsteps.config import LoadedConfig, resolved_dict
from dlsteps.config.schema import check_device
from dlsteps.data.loading import workers
from dlsteps.errors import (
    EXIT_GATE_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigError,
    UserError,
    as_user_error,
    storage_error,
)
from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.judge.verdict import Verdict, verdict_of
from dlsteps.ladder.own_step import own_step
from dlsteps.ladder.project import Project
from dlsteps.ladder.stages import STAGES, Stage, canonical_stage
from dlsteps.ladder.training import StageRun, train_stage
from dlsteps.preflight.checks import check_schedules, exit_code_codes, run_preflight
from dlsteps.preflight.step_checks import run_step_preflight
from dlsteps.report.console import Reporter
from dlsteps.report.html import write_report
from dlsteps.rundir.run import RunDir, finished_entries, overall_status, stamp
from dlsteps.tasks import make_task
from dlsteps.train import distributed, interrupts
from dlsteps.train.checkpoint import config_hash
from dlsteps.train.engine import Callback
from dlsteps.train.optim import check_optim
from dlsteps.train.threads import RunThreads


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
    # handed to every training stage's fit: an ablation's pruner (a stop at a flush is
    # recorded as ``pruned``), ``dlsteps profile --trace``'s profiler step
    callbacks: Sequence[Callback] = field(default_factory=tuple)


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


def select_stages(ladder: Sequence[Stage], opts: RunOptions) -> list[str]:
    names = [s.name for s in ladder]
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
    if opts.device is not None:
        try:
            check_device(opts.device)
        except ValueError as exc:
            raise ConfigError(f"--device: {exc} (got {opts.device!r})") from None
    task = make_task(loaded.base)
    for plan in loaded.plans.values():  # a bad primary, loss or optimizer fails first
        make_task(plan.config).primary(plan.config.metrics.primary)
        check_optim(plan.config.optim)
    stages = select_stages(task.ladder, opts)
    device = distributed.init(resolve_device(opts.device or loaded.base.device))
    if distributed.active() and (alone := [s.name for s in task.ladder if not s.distributed]):
        raise UserError(
            f"--nproc: the {task.name} task runs in one process (its {', '.join(alone)} "
            "stage is not distributed)"
        )
    resolved = resolved_dict(loaded)
    project = Project(loaded, device)
    run = _open_run_dir(loaded, opts)
    notes: list[str] = []
    try:
        with run.locked(notes):
            return _run_in(run, project, loaded, opts, stages, task.ladder, resolved, notes)
    except OSError as exc:  # a full disk, a folder that became read-only: no traceback
        if (error := storage_error(exc, run.path)) is None:
            raise
        raise error from exc


def _run_in(
    run: RunDir,
    project: Project,
    loaded: LoadedConfig,
    opts: RunOptions,
    stages: list[str],
    ladder: Sequence[Stage],
    resolved: dict[str, Any],
    notes: list[str],
) -> tuple[dict[str, Any], int]:
    """The run in its (locked) directory: the summary, then the climb."""
    digest = config_hash(resolved)
    device = project.device
    previous: dict[str, Any] | None = None
    project.attach(run)  # the data sets cache their image statistics in the run directory
    if opts.resume is None and stages:
        try:
            project.check_builds(loaded.plans[stages[0]])
        except UserError:  # a config that does not build leaves no directory behind
            run.discard_unrecorded()  # and the runs folder made for it
            raise
    if opts.resume is not None:
        previous = run.summary_to_resume(digest)
        if previous.get("selected") and not (opts.from_stage or opts.to_stage or opts.only):
            stages = list(previous["selected"])
    else:
        run.write_config(resolved)
    reporter = Reporter(quiet=opts.quiet or not run.writes)
    reporter.every = loaded.base.log.progress_every
    summary: dict[str, Any] = {
        "status": "running",
        "config": loaded.source or "<built-in default>",
        "run_dir": str(run),
        "name": loaded.name,
        "device": str(device),
        "started": stamp(),
        "config_hash": digest,
        "selected": stages,
        "ladder": [s.name for s in ladder],  # what "the next stage" means for this task
        "stages": [],
    }
    if previous is not None:
        summary["config"] = previous.get("config", summary["config"])
        summary["started"] = previous.get("started", summary["started"])
        summary["resumed"] = [*previous.get("resumed", []), stamp()]
    reporter.message(f"dlsteps: run directory {run} on {device}")
    for note in notes:
        reporter.message(f"[yellow]{note}[/yellow]")
    threads = RunThreads(loaded.base.threads, workers(loaded.base.data))
    if announcement := threads.announcement():
        reporter.message(announcement)
    with interrupts.graceful(reporter.message) as stop, threads:
        climb = _Climb(
            loaded,
            run,
            ladder,
            reporter,
            summary,
            StageRun(
                project,
                reporter,
                {},
                digest,
                resuming=previous is not None,
                stop_requested=stop,
                callbacks=opts.callbacks,
                threads=threads,
            ),
        )
        return climb.climb(stages, opts.keep_going, finished_entries(previous))


def _open_run_dir(loaded: LoadedConfig, opts: RunOptions) -> RunDir:
    """The run directory, decided by rank 0 (the one process that writes); every other
    rank gets the same path with writing off."""
    if opts.resume is not None and opts.run_dir is not None:
        raise UserError("--resume continues the run in its own directory; drop --run-dir")
    if not distributed.is_main():
        return RunDir(distributed.from_main(None), writes=False)
    if opts.resume is not None:
        run = RunDir.existing(opts.resume)
    elif opts.run_dir is not None:
        run = RunDir.fresh(opts.run_dir)
    else:
        run = RunDir.new(opts.runs_root, loaded.name)
    distributed.from_main(run.path)
    return run


@dataclass
class _Climb:
    loaded: LoadedConfig
    run_dir: RunDir
    ladder: Sequence[Stage]
    reporter: Reporter
    summary: dict[str, Any]
    stage_run: StageRun

    @property
    def history(self) -> dict[str, Verdict]:
        return self.stage_run.history

    def climb(
        self, stages: Sequence[str], keep_going: bool, finished: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, Any], int]:
        """The stages in order, until a failed gate (unless ``keep_going``), an error or a
        signal; a stage that ended before a ``--resume`` keeps its entry and verdict."""
        exit_code = EXIT_OK
        order = [s.name for s in self.ladder]
        for name in order:  # finished stages outside this selection stay in the record
            if name in finished and name not in stages:
                self.summary["stages"].append(finished[name])
                self.history[name] = self._stored(finished[name])
        for name in stages:
            if name in finished:
                entry = finished[name]
                self.summary["stages"].append(entry)
                verdict = self._stored(entry)
                self.history[name] = verdict
                self.reporter.message(
                    f"[dim]▶ {name}: {entry['status']} before the resume, kept[/dim]"
                )
            else:
                verdict = self._recorded(STAGES[name])
                if verdict is None:
                    return self.summary, EXIT_INTERRUPTED
            if verdict.status == "failed":
                codes = {d.code for d in verdict.diagnoses if d.severity == "fail"}
                exit_code = (
                    EXIT_USAGE
                    if STAGES[name].kind == "check" and codes & set(exit_code_codes())
                    else EXIT_GATE_FAILED
                )
                if not keep_going:
                    break
        self.summary["stages"].sort(key=lambda entry: order.index(entry["name"]))
        self.summary["status"] = overall_status(s["status"] for s in self.summary["stages"])
        self.run_dir.write_summary(self.summary)
        self.reporter.table(self.summary)
        if self.run_dir.writes:
            self.reporter.message(f"report: {write_report(self.run_dir)[1]}")
        return self.summary, exit_code

    def _recorded(self, stage: Stage) -> Verdict | None:
        """Run one stage and record it in the summary; ``None`` when a signal stopped it.

        A user's mistake found on the way (also one raised in a DataLoader worker, or a
        worker that crashed) is recorded as ``error`` and re-raised as one ``UserError``."""
        entry: dict[str, Any] = {"name": stage.name, "status": "running"}
        self.summary["stages"].append(entry)
        self.run_dir.write_summary(self.summary)  # after a kill -9 it names the running stage
        started = time.perf_counter()
        stop = self.stage_run.stop_requested
        try:
            if stop is not None and stop():
                raise interrupts.Interrupted()
            verdict, notes = self._stage(stage)
        except (KeyboardInterrupt, interrupts.Interrupted) as exc:
            entry.update(status="interrupted", seconds=round(time.perf_counter() - started, 3))
            if isinstance(exc, interrupts.Interrupted) and exc.step is not None:
                entry["step"] = exc.step
            self.summary["status"] = "interrupted"
            self.run_dir.write_summary(self.summary)
            self.reporter.stage_finished(entry)
            self.reporter.message(
                f"interrupted; continue with: dlsteps run --resume {self.run_dir}"
            )
            return None
        except Exception as exc:
            # recorded whatever it is: summary.json never stays "running" after an error
            error = as_user_error(exc) or storage_error(exc, self.run_dir.path)
            message = str(error) if error is not None else f"{type(exc).__name__}: {exc}"
            code = error.code if error is not None else "internal_error"
            step = getattr(error, "step", None)
            entry.update(
                status="error",
                seconds=round(time.perf_counter() - started, 3),
                error=message,
                diagnoses=[Diagnosis(code, message, step=step).to_json()],
            )
            self.summary["status"] = "error"
            # a full disk may refuse this record too: the summary then still names the
            # stage as running, which --resume reads as a crash, and the error is raised
            with contextlib.suppress(OSError):
                self.run_dir.write_summary(self.summary)
            if error is None or error is exc:
                raise
            raise error from exc
        entry.update(
            status=verdict.status,
            seconds=round(time.perf_counter() - started, 3),
            diagnoses=[d.to_json() for d in verdict.diagnoses],
            figures=verdict.figures,
            notes=notes,
        )
        self.history[stage.name] = verdict
        self.run_dir.write_summary(self.summary)
        self.reporter.stage_finished(entry)
        return verdict

    def _stage(self, stage: Stage) -> tuple[Verdict, list[str]]:
        """What the stage's record says it is: checked, refused, skipped or trained."""
        plan = self.loaded.plans[stage.name]
        stage_dir = self.run_dir.stage(stage.name)
        stage_dir.create()
        notes: list[str] = []
        if stage.kind == "check":  # judged on rank 0 alone, like every gate
            verdict = distributed.once(lambda: self._preflight(plan))
            skipped = verdict.figures.get("skipped_checks", {})  # the config's own step
            notes = [f"skipped: {check}: {why}" for check, why in skipped.items()]
            for note in notes:
                self.reporter.message(f"  [dim]· {note}[/dim]")
        elif refused := self._refusal(stage):
            self.reporter.message(
                f"[bold]▶ {stage.name}[/bold]: refused, {', '.join(stage.prerequisites)} "
                "must pass first"
            )
            verdict = refused
        elif self._skipped(stage):
            self.reporter.message(f"[dim]▶ {stage.name}: skipped, {stage.unconfigured}[/dim]")
            verdict, notes = Verdict("skipped"), [stage.unconfigured]
        else:
            verdict, notes = train_stage(self.stage_run, stage, plan, stage_dir)
        stage_dir.write_verdict(verdict.to_json(), notes)
        return verdict, notes

    def _skipped(self, stage: Stage) -> bool:
        """A stage that runs only once configured (scale-up), not configured here."""
        return bool(stage.unconfigured) and not self.loaded.configured(stage.name)

    def _stored(self, entry: dict[str, Any]) -> Verdict:
        """The verdict of a stage an earlier attempt finished, from its ``verdict.json``
        (the summary entry when a stage, like a skipped one, wrote none)."""
        return Verdict.from_json(self.run_dir.stage(entry["name"]).read_verdict() or entry)

    def _preflight(self, plan: Any) -> Verdict:
        self.reporter.message("[bold]▶ preflight[/bold]")
        project = self.stage_run.project
        train, val = project.datasets(plan)
        stats = project.stats(plan)
        model = project.model(plan)
        task = project.task(plan)
        if (own := own_step(plan.config, model)) is not None:
            verdict = run_step_preflight(
                model, own.step, train, val, stats, plan.config, project.device, task
            )
        else:
            loss_fn = task.loss().to(project.device)
            verdict = run_preflight(
                model, loss_fn, train, val, stats, plan.config, project.device, task
            )
        scheduled = [
            self.loaded.plans[s.name]
            for s in self.ladder
            if s.trains and not s.plain and not self._skipped(s)
        ]
        verdict.diagnoses += check_schedules(scheduled, len(train))
        return verdict_of(verdict.diagnoses, verdict.figures)

    def _refusal(self, stage: Stage) -> Verdict | None:
        """A failed verdict when a prerequisite has not passed in this run or its directory
        (a resumed run's earlier stages are read from their ``verdict.json``)."""
        if not stage.prerequisites:
            return None
        status = {}
        for name in stage.prerequisites:
            if name in self.history:
                status[name] = self.history[name].status
            elif (stored := self.run_dir.stage(name).read_verdict()) is not None:
                status[name] = stored.get("status", "?")
            else:
                status[name] = "not run"
        missing = {s: v for s, v in status.items() if v != "passed"}
        if not missing:
            return None
        listed = ", ".join(f"{s} {v}" for s, v in missing.items())
        return Verdict(
            "failed",
            [
                Diagnosis(
                    "prerequisite_not_passed",
                    f"{stage.refused_because}, but in {self.run_dir}: {listed}. "
                    f"{hint('prerequisite_not_passed')}",
                )
            ],
        )
