"""False alarms on correct pipelines, over seeds: preflight with torchvision's models, and
whole climbs of the built-in configs.

    .venv/bin/python scripts/sweep_silence.py                 # 20 seeds x 2, 3, 10 classes
    .venv/bin/python scripts/sweep_silence.py --seeds 5 --models resnet18 fcn_resnet50
    .venv/bin/python scripts/sweep_silence.py --ladder configs/seg.yaml configs/digits.yaml

Every model is freshly initialised with each seed (random weights, never downloaded) and
preflighted on random images in which every class appears; it prints, per model and
class count, how many seeds raised one of the rules fed by a fresh model's outputs or the
label counts (``tests/test_silence.py`` does the same for the small built-in models in
the test suite). With ``--ladder`` it climbs each config to full-data once per seed and
counts the seeds with any failure or any warning of the rules added for real data and for
the recipe checks (the codes in ``NEW``). The goal is 0 everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_silence import WATCHED, Images

from dlsteps.config import build_config
from dlsteps.data.stats import data_stats
from dlsteps.ladder.project import seed_everything
from dlsteps.models.registry import build_model
from dlsteps.preflight.checks import run_preflight
from dlsteps.tasks import task_class

MODELS = {
    "resnet18": ("classification", {"small_input": True}),
    "resnet34": ("classification", {"small_input": True}),
    "resnet50": ("classification", {"small_input": True}),
    "fcn_resnet50": ("segmentation", {}),
    "deeplabv3_resnet50": ("segmentation", {}),
    "lraspp_mobilenet_v3_large": ("segmentation", {}),
}


def sweep(name: str, classes: int, seeds: int) -> tuple[int, dict[int, list[str]]]:
    task_name, args = MODELS[name]
    task = task_class(task_name)()
    dense = task.dense_targets
    train, val = Images(32, classes, 32, dense, 0), Images(16, classes, 32, dense, 1)
    stats = data_stats(train, val, labels=True)
    config = build_config({"task": task_name}, "<sweep>").plans["preflight"].config
    alarms = {}
    for seed in range(seeds):
        seed_everything(seed)
        model = build_model(name, args, {"in_channels": 3, "num_classes": classes})
        verdict = run_preflight(
            model, task.loss(), train, val, stats, config, torch.device("cpu"), task
        )
        if noisy := [d.code for d in verdict.diagnoses if d.code in WATCHED]:
            alarms[seed] = noisy
    return seeds, alarms


# warnings of rules added for real data and the recipe checks: any on a correct pipeline
# is a false alarm
NEW = {
    "still_improving", "near_chance", "dead_units", "bad_update", "weight_decay_too_large",
    "batch_mixing", "schedule_mismatch", "class_missing", "extra_outputs", "labels_ignored",
    "unregistered_parameters",
}  # fmt: skip


def climb(config: Path, seeds: int) -> tuple[int, dict[int, list[str]]]:
    """Climb ``config`` to full-data once per seed in a child process; the seeds with a
    failed stage or a warning in ``NEW``, and what it was."""
    alarms = {}
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "dlsteps", "run", config.name, "--to", "full-data",
                 "--set", f"seed={seed}", "--run-dir", f"{tmp}/run", "-q"],
                env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, check=False,
                cwd=config.resolve().parent,  # the config's own plugins are importable
            )  # fmt: skip
            summary = json.loads((Path(tmp) / "run/summary.json").read_text())
        noisy = [
            f"{s['name']}:{d['code']}"
            for s in summary["stages"]
            for d in s.get("diagnoses", [])
            if d["severity"] == "fail" or d["code"] in NEW
        ]
        if noisy or summary["status"] != "passed":
            alarms[seed] = noisy or [summary["status"]]
    return seeds, alarms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--classes", type=int, nargs="+", default=[2, 3, 10])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--ladder", nargs="+", type=Path, help="configs to climb instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.ladder:
        print("| config | seeds | seeds with a false alarm | seconds |\n|---|---|---|---|")
        for config in args.ladder:
            started = time.perf_counter()
            seeds, alarms = climb(config, args.seeds)
            shown = "; ".join(f"seed {s}: {', '.join(c)}" for s, c in alarms.items()) or "0"
            print(f"| {config} | {seeds} | {shown} | {time.perf_counter() - started:.0f} |")
        return
    print("| model | classes | seeds | false alarms | seconds |\n|---|---|---|---|---|")
    total = alarmed = 0
    for name in args.models:
        for classes in args.classes:
            started = time.perf_counter()
            seeds, alarms = sweep(name, classes, args.seeds)
            total, alarmed = total + seeds, alarmed + len(alarms)
            shown = ", ".join(f"seed {s}: {'/'.join(c)}" for s, c in alarms.items()) or "0"
            print(
                f"| {name} | {classes} | {seeds} | {shown} | {time.perf_counter() - started:.0f} |"
            )
    print(f"\n{alarmed} of {total} preflights raised a watched code.")


if __name__ == "__main__":
    main()
