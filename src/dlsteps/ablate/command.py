"""``run_ablation``: the library function behind ``dlsteps ablate`` (new study, ``--join``,
``--resume``), from the request to the leaderboard."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console
from rich.markup import escape

from dlsteps.ablate import results, space
from dlsteps.ablate.study import (
    META_FILE,
    STUDY_FILE,
    StudySpec,
    create,
    load,
    open_storage,
    recover,
)
from dlsteps.ablate.worker import jobs_for, run_workers
from dlsteps.config import LoadedConfig, load_config
from dlsteps.config.schema import AblateConfig
from dlsteps.data.registry import build_datasets
from dlsteps.errors import (
    EXIT_GATE_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    UserError,
)
from dlsteps.ladder.stages import STAGES, TRAINING_STAGES, canonical_stage
from dlsteps.rundir.atomic import write_json
from dlsteps.rundir.run import RunDir

Say = Callable[..., None]
MINIMIZED = ("loss", "rmse", "mae", "error")


@dataclass
class AblateRequest:
    """What the command line asked for; every field has the meaning of its flag."""

    config: Path | None = None
    sets: list[str] = field(default_factory=list)
    grid: list[str] = field(default_factory=list)  # --grid KEY=V1,V2 (replaces ablate.grid)
    stage: str | None = None
    parallel: int | None = None
    no_prune: bool = False
    pruner: str | None = None
    trials: int | None = None
    directory: Path | None = None  # --dir
    storage: str | None = None
    study: str | None = None  # name of a new study
    join: str | None = None
    resume: Path | None = None
    device: str | None = None
    runs_root: Path = Path("runs")


@dataclass
class AblationResult:
    study: str
    directory: Path
    spec: StudySpec
    board: list[results.Row]
    exit_code: int

    def to_json(self) -> dict[str, Any]:
        top = results.best(self.board)
        return {
            "study": self.study,
            "directory": str(self.directory),
            "stage": self.spec.stage,
            "metric": self.spec.metric,
            "pruner": self.spec.pruner["name"],
            "compute_steps": results.compute(self.board),
            "best": None if top is None else {"trial": top.trial, "params": top.params},
            "trials": [{k: v for k, v in r.__dict__.items() if k != "curve"} for r in self.board],
        }


def run_ablation(req: AblateRequest, console: Console | None = None) -> AblationResult:
    """Create (or join, or resume) the study, run its trials, write the leaderboard."""
    console = console or Console(stderr=True)
    say = console.print
    optuna.logging.set_verbosity(logging.WARNING)  # dlsteps says what happens, once
    if req.resume is not None:
        name, storage_url, directory, parallel = _resume(req, say)
    elif req.join is not None:
        name, storage_url, directory, parallel = _join(req)
    else:
        name, storage_url, directory, parallel = _create(req, say)
    say(f"dlsteps ablate: study [bold]{name}[/bold], trials in {directory}")
    if parallel == 0:
        where = storage_url or directory / STUDY_FILE
        say(f"no local workers; start them with: dlsteps ablate --join {name} --storage {where}")
    _, spec = load(open_storage(storage_url, directory), name, worker=None)
    device = req.device or spec.config.get("device", "auto")
    jobs = jobs_for(parallel, storage_url, directory, name, device)
    interrupted, crashed = run_workers(jobs, lambda text: say(escape(text), highlight=False))
    study, spec = load(open_storage(storage_url, directory), name, worker=None)
    board = results.rows(study, spec)
    results.write_files(directory, board, spec, name)
    _print_summary(console, board, spec, f"ablation {name} · {directory}", directory)
    if crashed:
        say(f"[red]{len(crashed)} worker(s) crashed (exit codes {crashed}); see above[/red]")
    if interrupted:
        say(f"interrupted; continue with: dlsteps ablate --resume {directory}")
        code = EXIT_INTERRUPTED
    else:
        done = results.best(board) is not None or parallel == 0
        code = EXIT_OK if done and not crashed else EXIT_GATE_FAILED
    return AblationResult(name, directory, spec, board, code)


def _print_summary(
    console: Console, board: list[results.Row], spec: StudySpec, title: str, directory: Path
) -> None:
    console.print(results.table(board, spec, title))
    console.print(
        f"compute: {results.compute(board):,} optimizer steps over {len(board)} trials "
        f"({sum(r.state == 'pruned' for r in board)} pruned); "
        f"leaderboard: {directory / results.LEADERBOARD}, {directory / results.HTML}"
    )
    if (top := results.best(board)) is not None:
        line = f"best: trial {top.trial} {top.params} → {top.run_dir}"
        console.print(escape(line), highlight=False)


def _create(req: AblateRequest, say: Say) -> tuple[str, str | None, Path, int]:
    if req.config is None:
        raise UserError("missing CONFIG: dlsteps ablate CONFIG --grid KEY=V1,V2 ...")
    loaded = load_config(req.config, req.sets)
    cfg = loaded.base.ablate or AblateConfig()
    spec = make_spec(loaded, cfg, req)  # every variant validated before anything is written
    spec_dir = _new_directory(req, loaded)
    spec = replace(spec, directory=str(spec_dir))
    name = req.study or spec_dir.name
    storage = open_storage(req.storage, spec_dir)
    create(storage, name, spec)
    parallel = cfg.parallel if req.parallel is None else req.parallel
    write_json(spec_dir / META_FILE, _meta(name, req.storage, max(1, parallel)))
    what = f"{spec.trials} grid points" if spec.grid else f"{spec.trials} {spec.sampler} trials"
    say(f"{what} of stage {spec.stage}, pruner {spec.pruner['name']}")
    return name, req.storage, spec_dir, parallel


def _join(req: AblateRequest) -> tuple[str, str | None, Path, int]:
    if req.storage is None:
        raise UserError("--join STUDY needs --storage URL: the storage that holds the study")
    assert req.join is not None
    _, spec = load(open_storage(req.storage, Path.cwd()), req.join, worker=None)
    directory = req.directory or (
        Path(spec.directory) if Path(spec.directory).is_dir() else req.runs_root / req.join
    )
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / META_FILE).exists():
        write_json(directory / META_FILE, _meta(req.join, req.storage, 1))
    return req.join, req.storage, directory, 1 if req.parallel is None else req.parallel


def _resume(req: AblateRequest, say: Say) -> tuple[str, str | None, Path, int]:
    directory = req.resume
    assert directory is not None
    meta_path = directory / META_FILE
    if not meta_path.exists():
        raise UserError(f"--resume {directory}: no {META_FILE}; is this an ablation directory?")
    meta = json.loads(meta_path.read_text())
    url = meta.get("storage")
    if url == "url":
        if req.storage is None:
            raise UserError(
                f"--resume {directory}: its study lives in a database; pass --storage URL again"
            )
        url = req.storage
    storage = open_storage(url, directory)
    study, _ = load(storage, meta["study"], worker=None)
    retried = recover(study, storage)
    if retried:
        say(f"trials {retried} were interrupted; they run again (finished trials are kept)")
    parallel = int(meta.get("parallel", 1)) if req.parallel is None else req.parallel
    return meta["study"], url, directory, parallel


def _meta(name: str, storage: str | None, parallel: int) -> dict[str, Any]:
    """Never the URL itself: a database URL may hold a password."""
    kind = None if storage is None else "url" if "://" in storage else str(Path(storage).resolve())
    stamp = datetime.now().isoformat(timespec="seconds")
    return {"study": name, "storage": kind, "parallel": parallel, "created": stamp}


def _new_directory(req: AblateRequest, loaded: LoadedConfig) -> Path:
    if req.directory is None:
        return RunDir.new(req.runs_root, f"{loaded.name}-ablate").path.resolve()
    if req.directory.exists() and any(req.directory.iterdir()):
        raise UserError(
            f"--dir {req.directory} exists and is not empty; choose another directory, or "
            f"continue that ablation with --resume {req.directory}"
        )
    req.directory.mkdir(parents=True, exist_ok=True)
    return req.directory.resolve()


def make_spec(loaded: LoadedConfig, cfg: AblateConfig, req: AblateRequest) -> StudySpec:
    """The study's fixed description: variants, metric, pruner; every variant validated."""
    stage = _stage(req.stage or cfg.stage)
    grid = dict(space.parse_grid_option(g) for g in req.grid) if req.grid else dict(cfg.grid)
    search = {} if req.grid else {k: v.model_dump() for k, v in cfg.search.items()}
    if not grid and not search:
        raise ConfigError(
            "nothing to vary: give --grid KEY=V1,V2 (e.g. --grid optim.lr=1e-2,1e-3) or an "
            "ablate: section with grid or search"
        )
    points = space.grid_points(grid) if grid else space.search_corners(search)
    space.check_variants(loaded.raw, points, loaded.source)
    plan = loaded.plans[stage]
    maximize = (
        cfg.direction == "maximize"
        if cfg.direction != "auto"
        else not cfg.metric.lower().endswith(MINIMIZED)
    )
    pruner = {
        "name": "none" if req.no_prune else (req.pruner or cfg.pruner.name),
        "reduction_factor": cfg.pruner.reduction_factor,
        "startup_trials": cfg.pruner.startup_trials,
        "min_steps": cfg.pruner.min_steps,
        "max_steps": None,
    }
    if pruner["name"] != "none":
        total = stage_steps(loaded, stage)
        rf = cfg.pruner.reduction_factor
        pruner["max_steps"] = total
        pruner["min_steps"] = pruner["min_steps"] or max(1, round(total / rf**2))
    return StudySpec(
        config=loaded.raw,
        source=loaded.source,
        stage=stage,
        metric=cfg.metric,
        maximize=maximize,
        smooth=cfg.smooth or plan.knobs.gate.val_smooth,
        grid=grid,
        search=search,
        sampler=cfg.sampler,
        trials=len(points) if grid else (req.trials or cfg.trials),
        pruner=pruner,
        seed=loaded.base.seed,
        directory="",  # set once the directory exists
    )


def _stage(name: str) -> str:
    stage = canonical_stage(name, "--stage")
    if stage not in TRAINING_STAGES:
        raise ConfigError(f"--stage {stage}: does not train; choose one of {TRAINING_STAGES}")
    return stage


def stage_steps(loaded: LoadedConfig, stage: str) -> int:
    """Optimizer steps of the stage in the base config (the pruner's resource scale)."""
    plan = loaded.plans[stage]
    if plan.knobs.steps:
        return plan.knobs.steps
    epochs = plan.knobs.epochs or 1
    if STAGES[stage].plain:
        return epochs  # one fixed batch per "epoch"
    cfg = plan.config
    train, _ = build_datasets(cfg.data.name, cfg.data.args, cfg.seed)
    return epochs * math.ceil(len(train) / cfg.data.batch_size)
