"""The Optuna study behind an ablation: storage, the spec every worker reads, and the
rules for handing out trials so that no two workers ever run the same one.

Storage. By default a journal file (``study.journal``) in the ablation directory:
Optuna's ``JournalStorage`` appends one JSON line per operation under a file lock, so
any number of local worker processes share it safely (SQLite, Optuna's other embedded
choice, serialises writers on one database lock and reports "database is locked" under
parallel workers; ``scripts/bench_ablate.py storage`` measures both). ``--storage URL``
(``postgresql://``, ``mysql://``, ``sqlite:///``) uses Optuna's RDB storage instead, and a
plain path names a journal file (e.g. on a shared NFS mount) — either lets workers on
several machines join one study.

Handing out trials. Grid points are enqueued (``WAITING``) when the study is created;
a worker claims one by moving it to ``RUNNING``, which the storage grants to exactly one
worker. A search draws new trials with ``study.ask()`` until ``trials`` are counted.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from dlsteps.ablate.space import grid_points
from dlsteps.errors import UserError

STUDY_FILE = "study.journal"
META_FILE = "ablate.json"  # study name and storage kind, for --resume
SPEC_ATTR = "dlsteps"  # study user attr holding the StudySpec


@dataclass(frozen=True)
class StudySpec:
    """Everything a worker needs to run trials of the study, stored in the study itself
    (so ``--join STUDY`` on another machine needs only the storage URL)."""

    config: dict[str, Any]  # the raw config, --set applied
    source: str | None  # the config file, for messages and summaries
    stage: str
    metric: str
    maximize: bool
    smooth: int
    grid: dict[str, list[Any]]  # key -> values; empty for a search
    search: dict[str, dict[str, Any]]  # key -> {low, high, log, choices}; empty for a grid
    sampler: str  # tpe | random (search only)
    trials: int  # the study's size: grid points, or the search budget
    pruner: dict[str, Any]  # name, min_steps, max_steps, reduction_factor, startup_trials
    seed: int
    directory: str  # where the creating machine keeps trial run directories

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StudySpec:
        return cls(**json.loads(text))


def open_storage(url: str | None, directory: Path) -> BaseStorage:
    """The study's storage: a journal file in ``directory`` unless ``url`` says otherwise."""
    if url is None:
        return JournalStorage(JournalFileBackend(str(directory / STUDY_FILE)))
    if "://" not in url:
        path = Path(url)
        if not path.parent.is_dir():
            raise UserError(f"--storage {url}: directory {path.parent} does not exist")
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        interval = heartbeat_seconds()
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                with_driver(url), heartbeat_interval=interval, grace_period=3 * interval
            )
    except (ImportError, ModuleNotFoundError) as exc:
        raise UserError(f"--storage: the database driver is not installed ({exc})") from exc
    except Exception as exc:  # sqlalchemy raises many kinds; all mean "cannot use this URL"
        raise UserError(f"--storage: cannot open {_safe(url)}: {exc}") from exc


# Optuna 4.9 renamed the callback that re-queues a trial whose heartbeat stopped
try:
    from optuna.storages import RetryHeartbeatStaleTrialCallback as _Retry
except ImportError:  # optuna < 4.9
    from optuna.storages import RetryFailedTrialCallback as _Retry

HEARTBEAT_ENV = "DLSTEPS_HEARTBEAT_SECONDS"


def heartbeat_seconds() -> int:
    """How often a worker on a database study says it is alive (``DLSTEPS_HEARTBEAT_SECONDS``,
    default 10); one silent for three intervals is failed and its trial queued again."""
    text = os.environ.get(HEARTBEAT_ENV, "10")
    try:
        seconds = int(text)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise UserError(f"{HEARTBEAT_ENV}={text!r}: expected a whole number of seconds, >= 1")
    return seconds


def stale_checked(study: optuna.Study) -> bool:
    """Fail the trials whose worker stopped sending heartbeats (``kill -9``, a lost
    machine), recorded as interrupted, and queue each again with the same params (Optuna's
    retry callback: the retry notes ``failed_trial``). ``False`` when the storage keeps no
    heartbeats (a journal file: ``--resume`` recovers those trials)."""
    storage = study._storage
    if not (isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval()):
        return False
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        before = copy.deepcopy(storage.get_trial(trial_id))  # the retry copies its attrs
        try:
            # said while it still runs: a finished trial takes no more attributes
            storage.set_trial_user_attr(
                trial_id, "interrupted", "its worker stopped (no heartbeat)"
            )
            failed = storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another worker failed it first, and queued its retry
        if failed:
            with warnings.catch_warnings():  # the retry callback is "experimental" too
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                _Retry(max_retry=3)(study, before)
    return True


@contextlib.contextmanager
def heartbeat(trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat every interval while the block runs (database studies)."""
    storage = trial.study._storage
    interval = storage.get_heartbeat_interval() if isinstance(storage, BaseHeartbeat) else None
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="ablate-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def with_driver(url: str) -> str:
    """A plain ``postgresql://`` URL names the driver that is installed: SQLAlchemy 2.1
    picks psycopg (3) for it and 2.0 psycopg2, so either package works with either."""
    if not url.startswith("postgresql://"):
        return url
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return dialect + url[len("postgresql") :]
    return url  # SQLAlchemy's own error then names the missing driver


def make_pruner(p: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    name = p["name"]
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p["min_steps"], reduction_factor=p["reduction_factor"]
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p["min_steps"],
            max_resource=max(p["max_steps"], p["min_steps"]),
            reduction_factor=p["reduction_factor"],
        )
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p["startup_trials"], n_warmup_steps=p["min_steps"]
        )
    return optuna.pruners.NopPruner()


def make_sampler(spec: StudySpec, worker: int | None) -> optuna.samplers.BaseSampler:
    """Seeded per local worker (``worker``), so parallel workers do not draw the same
    values; a worker joining from elsewhere (``None``) is seeded by the OS."""
    seed = None if worker is None else spec.seed * 1000 + worker
    if spec.search and spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)  # a grid only ever gets fixed params


def create(storage: BaseStorage, name: str, spec: StudySpec) -> optuna.Study:
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="maximize" if spec.maximize else "minimize",
            pruner=make_pruner(spec.pruner),
            sampler=make_sampler(spec, 0),
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise UserError(
            f"a study named '{name}' already exists in that storage; join it with "
            f"--join {name}, or choose another --study name"
        ) from None
    for params in grid_points(spec.grid) if spec.grid else []:
        study.enqueue_trial(params)
    # written last: a worker that sees the spec also sees every grid point enqueued
    study.set_user_attr(SPEC_ATTR, spec.to_json())
    return study


def load(storage: BaseStorage, name: str, worker: int | None) -> tuple[optuna.Study, StudySpec]:
    names = [s.study_name for s in storage.get_all_studies()]
    if name not in names:
        raise UserError(f"no study named '{name}' in that storage (it has: {', '.join(names)})")
    text = storage.get_study_user_attrs(storage.get_study_id_from_name(name)).get(SPEC_ATTR)
    if text is None:
        raise UserError(f"study '{name}' was not created by dlsteps ablate (or is being created)")
    spec = StudySpec.from_json(text)
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        pruner=make_pruner(spec.pruner),
        sampler=make_sampler(spec, worker),
    )
    return study, spec


def claim(study: optuna.Study, storage: BaseStorage, spec: StudySpec) -> optuna.Trial | None:
    """The next trial for this worker, or ``None`` when the study has none left.

    A ``WAITING`` trial (a grid point, or a retry of an interrupted one) goes to whichever
    worker's RUNNING transition the storage accepts first; the others move on.
    """
    while True:
        beats = stale_checked(study)
        if (trial := _waiting(study, storage)) is not None:
            return trial
        if spec.search and counted(study) < spec.trials:
            return _mark(study.ask())
        if not (beats and study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
            return None
        # trials still run elsewhere: one whose worker dies comes back as a waiting retry
        time.sleep(storage.get_heartbeat_interval())


def _waiting(study: optuna.Study, storage: BaseStorage) -> optuna.Trial | None:
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        try:
            if storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                return _mark(optuna.Trial(study, trial_id))
        except UpdateFinishedTrialError:
            continue
    return None


def _mark(trial: optuna.Trial) -> optuna.Trial:
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    return trial


def counted(study: optuna.Study) -> int:
    """Trials that use up the budget: all but the interrupted ones (they are retried)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if not _interrupted(t))


def _interrupted(t: FrozenTrial) -> bool:
    return t.state == TrialState.FAIL and "interrupted" in t.user_attrs


def recover(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """For ``--resume``: trials whose local worker is gone are failed as interrupted, and
    every interrupted trial not yet retried is enqueued again with the same params.
    Finished trials are kept as they are. Returns the numbers of the trials retried."""
    study_id = storage.get_study_id_from_name(study.study_name)
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        mine = t.user_attrs.get("host", host) == host
        if mine and not _alive(t.user_attrs.get("pid")):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_user_attr(trial_id, "interrupted", "its worker process ended")
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    retried |= {t.system_attrs.get("failed_trial") for t in trials}  # heartbeat retries
    again = [t for t in trials if _interrupted(t) and t.number not in retried]
    for t in again:
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return [t.number for t in again]


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _safe(url: str) -> str:
    """A storage URL without its password, fit for messages and files."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        rest = f"{user}:***@{rest.split('@', 1)[1]}"
    return f"{scheme}{sep}{rest}"
