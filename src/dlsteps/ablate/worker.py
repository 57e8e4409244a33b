"""Workers: claim a trial, run it, tell the study, refresh the leaderboard, repeat.

``--parallel K`` starts K worker processes (``spawn``: a forked copy of a process that
already ran torch is not safe) that share the study's storage; on one machine with
several GPUs worker *i* trains on ``cuda:i mod N``, on CPU the cores are split between
them. ``--join`` runs the very same loop from another shell or machine.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

from dlsteps.ablate import results
from dlsteps.ablate.study import claim, heartbeat, load, open_storage
from dlsteps.ablate.trial import Outcome, run_trial
from dlsteps.errors import EXIT_INTERRUPTED
from dlsteps.train import interrupts

Say = Callable[[str], None]


@dataclass(frozen=True)
class Job:
    """One worker's orders (picklable: it crosses into a spawned process)."""

    storage: str | None  # None: the journal file in ``directory``
    directory: str  # trial run directories and leaderboard go here
    study: str
    device: str | None
    worker: int | None  # local index (seeds the sampler); None when joining from elsewhere
    threads: int | None = None  # torch CPU threads; None: torch's default


def work(job: Job, say: Say) -> bool:
    """Run trials until the study has none left; ``True`` when a signal stopped a trial."""
    if job.threads:
        torch.set_num_threads(job.threads)
        # the cores are this worker's share: a trial's ``threads: auto`` keeps the count
        os.environ["OMP_NUM_THREADS"] = str(job.threads)
    optuna.logging.set_verbosity(logging.WARNING)
    directory = Path(job.directory)
    storage = open_storage(job.storage, directory)
    study, spec = load(storage, job.study, job.worker)
    while (trial := claim(study, storage, spec)) is not None:
        with heartbeat(trial):  # a database study re-runs a trial whose worker goes silent
            outcome = run_trial(trial, spec, directory, job.device)
        results.write_hparams(
            outcome.run_dir,
            outcome.params,
            outcome.state,
            {"ablate/value": outcome.value or float("nan"), "ablate/steps": outcome.steps},
        )
        say(describe(outcome, spec.metric))
        results.write_files(directory, results.rows(study, spec), spec, job.study)
        if outcome.state == "interrupted":
            return True
    return False


def describe(o: Outcome, metric: str) -> str:
    params = " ".join(f"{k}={v}" for k, v in o.params.items())
    value = f"{metric} {o.value:.4g}" if o.value is not None else o.note
    where = f" at step {o.steps}" if o.state == "pruned" else ""
    return f"trial {o.number} [{params}]: {o.state}{where}, {value} ({o.steps} steps)"


def jobs_for(
    parallel: int, storage: str | None, directory: Path, study: str, device: str
) -> list[Job]:
    """K local workers: one GPU each (round-robin) when several, else the CPU cores split."""
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    threads = max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 and gpus == 0 else None
    return [
        Job(
            storage,
            str(directory),
            study,
            f"cuda:{i % gpus}" if gpus > 1 else device,
            worker=i,
            threads=threads,
        )
        for i in range(parallel)
    ]


def run_workers(jobs: Sequence[Job], say: Say) -> tuple[bool, list[int]]:
    """Run the jobs (in this process when there is one); returns (interrupted, the exit
    codes of workers that crashed)."""
    if len(jobs) <= 1:
        return (work(jobs[0], say) if jobs else False), []
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(job,), name=f"ablate-{job.worker}") for job in jobs]
    for p in procs:
        p.start()
    # Ctrl-C reaches every worker of the process group: each finishes its step, records its
    # trial as interrupted and exits 130; this process only waits for them.
    with interrupts.graceful(say) as stopped:
        for p in procs:
            p.join()
    codes = [p.exitcode or 0 for p in procs]
    crashed = [c for c in codes if c not in (0, EXIT_INTERRUPTED)]
    return stopped() or EXIT_INTERRUPTED in codes, crashed


def _child(job: Job) -> None:
    def say(text: str) -> None:
        print(f"[worker {job.worker}] {text}", file=sys.stderr, flush=True)

    try:
        interrupted = work(job, say)
    except KeyboardInterrupt:
        interrupted = True
    sys.exit(EXIT_INTERRUPTED if interrupted else 0)
