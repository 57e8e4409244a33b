"""Does pruning pay? And which study storage survives parallel workers?

    .venv/bin/python scripts/bench_ablate.py            # grid: pruned vs --no-prune
    .venv/bin/python scripts/bench_ablate.py storage    # journal file vs SQLite

``grid`` runs the 9-variant grid optim.lr=1e-2,1e-3,1e-4 x model.args.width=8,16,32 on
the full-data stage of configs/seg.yaml twice, with the default pruner and with
``--no-prune``, one worker each (so every decision is reproducible), and prints the summed
optimizer steps of each and their best variants. It exits 1 unless pruning used at most
half the steps and found the same best variant. Optimizer steps, not seconds, are the
measure: they do not depend on what else the machine is doing.

``storage`` starts K processes that share one study and each run T trials with R pruner
reports apiece (what an ablation writes, without the training), once on Optuna's journal
file and once on SQLite, and prints wall time and failed operations for each.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = ["optim.lr=1e-2,1e-3,1e-4", "model.args.width=8,16,32"]


def bench_grid(args: argparse.Namespace) -> int:
    # imported here: the storage workers are spawned processes that should not load torch
    from rich.console import Console

    from dlsteps.ablate import AblateRequest, run_ablation
    from dlsteps.ablate.results import best, compute

    out = Path(args.dir or tempfile.mkdtemp(prefix="bench_ablate_"))
    quiet = Console(stderr=True, quiet=not args.verbose)
    found = {}
    for mode in ("no-prune", "prune"):
        started = time.perf_counter()
        result = run_ablation(
            AblateRequest(
                config=ROOT / args.config,
                grid=GRID,
                stage="full-data",
                no_prune=mode == "no-prune",
                parallel=args.parallel,
                directory=out / mode,
                device=args.device,
            ),
            console=quiet,
        )
        top = best(result.board)
        found[mode] = (compute(result.board), top, time.perf_counter() - started)
        pruned = sum(r.state == "pruned" for r in result.board)
        print(
            f"{mode:>9}: {found[mode][0]:5d} optimizer steps, {pruned} of "
            f"{len(result.board)} trials pruned, {found[mode][2]:.0f} s; best "
            f"{top.params if top else None} {result.spec.metric} "
            f"{top.value if top else float('nan'):.4g}  ({out / mode})",
            flush=True,
        )
    (full, top_full, _), (cut, top_cut, _) = found["no-prune"], found["prune"]
    same = top_full is not None and top_cut is not None and top_full.params == top_cut.params
    print(f"pruned / no-prune compute: {cut}/{full} = {cut / full:.2f} (must be <= 0.50)")
    print(f"same best variant: {'yes' if same else 'NO'}")
    return 0 if same and cut <= full / 2 else 1


def _storage_worker(url: str, study: str, trials: int, reports: int, queue: mp.Queue) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    errors = 0
    s = optuna.load_study(
        study_name=study, storage=_storage(url), pruner=optuna.pruners.MedianPruner()
    )
    for _ in range(trials):
        try:
            trial = s.ask()
            x = trial.suggest_float("x", -1, 1)
            for step in range(reports):
                trial.report(x * x + 1 / (step + 1), step)
                trial.should_prune()
            s.tell(trial, x * x)
        except Exception as exc:  # "database is locked" and friends: what we count
            errors += 1
            print(f"  {type(exc).__name__}: {str(exc).splitlines()[0][:100]}", file=sys.stderr)
    queue.put(errors)


def _storage(url: str):
    from optuna.storages import RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url.startswith("sqlite"):
        return RDBStorage(url)
    return JournalStorage(JournalFileBackend(url))


def bench_storage(args: argparse.Namespace) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="bench_storage_"))
    ctx = mp.get_context("spawn")
    for kind, url in (("journal", str(tmp / "study.journal")), ("sqlite", f"sqlite:///{tmp}/s.db")):
        optuna.create_study(storage=_storage(url), study_name="bench")
        queue = ctx.Queue()
        procs = [
            ctx.Process(
                target=_storage_worker, args=(url, "bench", args.trials, args.reports, queue)
            )
            for _ in range(args.workers)
        ]
        started = time.perf_counter()
        for p in procs:
            p.start()
        errors = sum(queue.get() for _ in procs)
        for p in procs:
            p.join()
        wall = time.perf_counter() - started
        done = len(optuna.load_study(study_name="bench", storage=_storage(url)).trials)
        ops = args.workers * args.trials * (2 * args.reports + 2)
        print(
            f"{kind:>8}: {args.workers} workers x {args.trials} trials x {args.reports} "
            f"reports: {wall:.1f} s ({ops / wall:.0f} ops/s), {done} trials stored, "
            f"{errors} failed",
            flush=True,
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("grid", "storage"), default="grid")
    parser.add_argument("--config", default="configs/seg.yaml")
    parser.add_argument("--dir", help="keep the two ablations here (default: a temp dir)")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--verbose", action="store_true", help="show the leaderboards")
    parser.add_argument("--workers", type=int, default=4, help="storage: processes")
    parser.add_argument("--trials", type=int, default=25, help="storage: trials per process")
    parser.add_argument("--reports", type=int, default=20, help="storage: reports per trial")
    args = parser.parse_args()
    return bench_grid(args) if args.what == "grid" else bench_storage(args)


if __name__ == "__main__":
    sys.exit(main())
