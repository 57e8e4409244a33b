"""``dlsteps ablate``: pruned trials are stopped and recorded, workers sharing one storage
never run a trial twice, an interrupted study resumes without redoing finished trials."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlsteps.ablate.space import grid_points, parse_grid_option
from dlsteps.ablate.study import STUDY_FILE, open_storage
from dlsteps.errors import ConfigError
from dlsteps.logbook.curves import read_curves

# 32 train samples of 16x16, batch 8: 4 steps an epoch; a flush (and rung check) every 4.
TINY: dict[str, Any] = {
    "name": "tiny",
    "task": "segmentation",
    "seed": 0,
    "device": "cpu",
    "data": {
        "name": "shapes",
        "args": {"num_train": 32, "num_val": 16, "size": 16, "num_classes": 3, "max_shapes": 2},
        "batch_size": 8,
    },
    "model": {"name": "tiny_unet", "args": {"width": 4}},
    "optim": {"name": "adam", "lr": 0.01},
    "log": {"flush_every": 4},
    "stages": {"full-data": {"epochs": 6, "gate": {"val_smooth": 3}}},
}
STEPS = 24


def _leaderboard(directory: Path) -> dict[int, dict[str, str]]:
    with (directory / "leaderboard.csv").open() as fh:
        return {int(r["trial"]): r for r in csv.DictReader(fh)}


def _trials(directory: Path, storage: str | None = None) -> list[optuna.trial.FrozenTrial]:
    meta = json.loads((directory / "ablate.json").read_text())
    study = optuna.load_study(study_name=meta["study"], storage=open_storage(storage, directory))
    return study.get_trials()


def _complete_params(trials: list[optuna.trial.FrozenTrial]) -> list[dict[str, Any]]:
    done = optuna.trial.TrialState.COMPLETE
    return sorted((t.params for t in trials if t.state == done), key=lambda p: sorted(p.items()))


def _dlsteps(*args: Any, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dlsteps", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_grid_option_reads_numbers_and_rejects_nonsense() -> None:
    assert parse_grid_option("optim.lr=1e-2,1e-3") == ("optim.lr", [0.01, 0.001])
    assert parse_grid_option("model.name=tiny_unet,unet") == ("model.name", ["tiny_unet", "unet"])
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_grid_option("optim.lr")
    points = grid_points({"a": [1, 2], "b": ["x", "y"]})
    assert points == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]


def test_a_bad_grid_key_exits_2_naming_it_before_any_trial(cli, write_config, tmp_path) -> None:
    out = tmp_path / "abl"
    result = cli("ablate", write_config(TINY), "--grid", "optim.lrr=1e-2,1e-3", "--dir", out)
    assert result.code == 2
    assert "optim.lrr" in result.err
    assert not out.exists()  # nothing written for a study that cannot run


@pytest.mark.slow
def test_a_hopeless_trial_is_pruned_and_recorded(cli, write_config, tmp_path) -> None:
    config = write_config(TINY)
    pruned_dir, full_dir = tmp_path / "pruned", tmp_path / "full"
    grid = ("--grid", "optim.lr=1e-2,1e-6")
    result = cli("ablate", config, *grid, "--dir", pruned_dir, "--json")
    assert result.code == 0, result.err
    board = _leaderboard(pruned_dir)
    assert board[0]["state"] == "complete" and board[0]["rank"] == "1"
    assert board[1]["state"] == "pruned"
    stopped_at = int(board[1]["pruned_at_step"])
    assert 0 < stopped_at < STEPS
    # the pruned trial is an ordinary run directory, its logs kept up to the stop
    summary = json.loads((pruned_dir / "trials/001/summary.json").read_text())
    assert summary["status"] == "pruned"
    entry = summary["stages"][0]
    assert entry["status"] == "pruned"
    assert entry["figures"]["pruned_at_step"] == stopped_at
    assert any("pruned at step" in n and "successive_halving" in n for n in entry["notes"])
    train = read_curves(pruned_dir / "trials/001/full-data").get_curve("train/loss")
    assert int(train.steps[-1]) == stopped_at == len(train)
    assert int(board[1]["steps"]) == stopped_at and int(board[0]["steps"]) == STEPS
    report = json.loads(result.out)
    assert report["compute_steps"] == STEPS + stopped_at
    assert report["best"]["params"] == {"optim.lr": 0.01}
    # one TensorBoard HParams session per trial
    acc = EventAccumulator(str(pruned_dir / "trials/001"))
    acc.Reload()
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
    assert "trial 1" in (pruned_dir / "ablate.html").read_text()

    result = cli("ablate", config, *grid, "--dir", full_dir, "--no-prune", "--json")
    assert result.code == 0, result.err
    board = _leaderboard(full_dir)
    assert [board[i]["state"] for i in (0, 1)] == ["complete", "complete"]
    assert json.loads(result.out)["compute_steps"] == 2 * STEPS


@pytest.mark.slow
def test_two_workers_sharing_one_storage_never_run_a_trial_twice(cli, write_config, tmp_path):
    config = write_config(TINY, stages={"full-data": {"epochs": 10}})
    home, first, second = tmp_path / "home", tmp_path / "first", tmp_path / "second"
    grid = ["--grid", "optim.lr=1e-2,1e-3", "--grid", "model.args.width=4,8"]
    # --parallel 0 creates the study only; two workers (as on two machines) join it
    created = cli("ablate", config, *grid, "--no-prune", "--dir", home, "--parallel", "0")
    assert created.code == 0, created.err
    name = json.loads((home / "ablate.json").read_text())["study"]
    journal = home / STUDY_FILE
    workers = [
        _dlsteps("ablate", "--join", name, "--storage", journal, "--dir", d, cwd=tmp_path)
        for d in (first, second)
    ]
    for proc in workers:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    trials = _trials(home)
    assert len(trials) == 4
    assert _complete_params(trials) == sorted(
        grid_points({"optim.lr": [0.01, 0.001], "model.args.width": [4, 8]}),
        key=lambda p: sorted(p.items()),
    )
    by_worker: dict[int, list[int]] = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs["pid"], []).append(t.number)
    assert sorted(by_worker) == sorted(p.pid for p in workers), "both workers ran trials"
    run_dirs = sorted(p.name for d in (first, second) for p in d.glob("trials/*"))
    assert run_dirs == ["000", "001", "002", "003"]  # every trial ran once, somewhere


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_study_resumes_without_redoing_finished_trials(
    cli, write_config, tmp_path, sig
) -> None:
    config = write_config(TINY, stages={"full-data": {"epochs": 20}})
    out = tmp_path / "abl"
    grid = ["--grid", "optim.lr=1e-2,3e-3,1e-3"]
    proc = _dlsteps("ablate", config, *grid, "--no-prune", "--dir", out, cwd=tmp_path)
    second = out / "trials/001/full-data/scalars.jsonl"
    _wait_for(lambda: (second.exists() and second.stat().st_size > 0) or proc.poll() is not None)
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode in ((130,) if sig == signal.SIGINT else (-signal.SIGKILL,))
    before = {
        t.number: (out / f"trials/{t.number:03d}/summary.json").stat().st_mtime_ns
        for t in _trials(out)
        if t.state == optuna.trial.TrialState.COMPLETE
    }
    assert 0 in before and 1 not in before

    result = cli("ablate", "--resume", out)
    assert result.code == 0, result.err
    trials = _trials(out)
    assert _complete_params(trials) == [{"optim.lr": v} for v in (0.001, 0.003, 0.01)]
    for number, mtime in before.items():  # finished trials were not run again
        assert (out / f"trials/{number:03d}/summary.json").stat().st_mtime_ns == mtime
    retried = [t for t in trials if "retry_of" in t.user_attrs]
    assert [t.user_attrs["retry_of"] for t in retried] == [1]
    assert retried[0].params == trials[1].params
    assert (out / "trials/001/full-data/scalars.jsonl").stat().st_size > 0  # its logs kept
    if sig == signal.SIGINT:  # a graceful stop also records the stage as interrupted
        summary = json.loads((out / "trials/001/summary.json").read_text())
        assert summary["stages"][0]["status"] == "interrupted"
    assert _leaderboard(out)[1]["state"] == "interrupted"
