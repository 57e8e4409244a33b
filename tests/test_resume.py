"""Interrupt, crash and resume: nothing logged is lost, nothing is logged twice, and a
resumed run's logbook equals an uninterrupted one's (the ``time`` field, ``time/*`` and
``mem/*`` excepted: they measure the machine, not the training).

The subprocess tests run the real ``dlsteps`` and signal it at a random step; the model
has dropout, so the RNG state must travel through the checkpoint for the values to match.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlsteps.config import load_config
from dlsteps.errors import UserError
from dlsteps.ladder.runner import RunOptions, run_ladder
from dlsteps.logbook.book import Logbook
from dlsteps.logbook.curves import Row, read_curves
from dlsteps.rundir.run import StageDir
from dlsteps.train import checkpoint
from dlsteps.train.callbacks import EarlyStop
from dlsteps.train.checkpoint import Trainables
from dlsteps.train.engine import Progress

CONFIG: dict[str, Any] = {
    "name": "resume",
    "task": "segmentation",
    "seed": 0,
    "device": "cpu",
    "data": {"name": "shapes", "args": {"num_train": 32, "num_val": 16, "size": 16}},
    "model": {"name": "unet", "args": {"width": 4, "depth": 2, "batchnorm": False, "dropout": 0.2}},
    # flush every step so the test sees each step land; periodic checkpoints for kill -9
    "log": {"flush_every": 1, "checkpoint_every": 7},
    "stages": {
        "overfit-one": {"steps": 12, "gate": {"train_loss_below": 5.0}},
        "overfit-few": {"samples": 4, "steps": 12, "gate": {"train_loss_below": 5.0}},
        "full-data": {"steps": 40, "gate": {"max_batch_seconds": 10.0}},
    },
}
CONFIG["data"]["batch_size"] = 8
STAGES = ("overfit-one", "overfit-few", "full-data")
MEASURED = ("time/", "mem/")  # wall-clock and memory readings differ between any two runs
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread, like the reference in conftest


def _write_config(directory: Path) -> Path:
    path = directory / "resume.yaml"
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return path


def _dlsteps(*args: Any) -> subprocess.Popen:
    command = [sys.executable, "-m", "dlsteps", *map(str, args), "--quiet"]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def _rows(stage_dir: Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every logged value, in file order, measurements left out."""
    out = []
    for line in (stage_dir / "scalars.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if not rec["tag"].startswith(MEASURED):
            out.append((rec["step"], rec["tag"], rec["value"]))
    return out


def _all_keys(stage_dir: Path) -> list[tuple[int, str]]:
    lines = (stage_dir / "scalars.jsonl").read_text().splitlines()
    return [(rec["step"], rec["tag"]) for rec in map(json.loads, lines)]


def _wait_for_step(stage_dir: Path, step: int, proc: subprocess.Popen) -> None:
    """Poll the logbook (flushed every step) until ``step`` has been logged."""
    path, needle = stage_dir / "scalars.jsonl", f'"step": {step}, "tag": "train/loss"'
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before step {step}: {proc.stderr.read().decode()}")
        time.sleep(0.005)
    pytest.fail(f"step {step} never appeared in {path}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The uninterrupted run every interrupted one is compared with."""
    base = tmp_path_factory.mktemp("reference")
    code, err = _finish(
        _dlsteps("run", _write_config(base), "--to", "full-data", "--run-dir", base / "run")
    )
    assert code in (0, 1), err
    return base / "run", code


def _assert_same_logbooks(resumed: Path, reference: Path, note: str) -> None:
    for stage in STAGES:
        assert _rows(resumed / stage) == _rows(reference / stage), f"{stage}: {note}"
        keys = _all_keys(resumed / stage)
        assert len(keys) == len(set(keys)), f"{stage}: a (step, tag) logged twice ({note})"


@pytest.mark.slow
@pytest.mark.xdist_group("resume-reference")  # one worker computes the reference
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_at_a_random_step_then_resume_gives_the_uninterrupted_logbook(
    reference: tuple[Path, int], tmp_path: Path, signum: int
) -> None:
    ref_dir, ref_code = reference
    at = random.randint(2, 25)
    run_dir = tmp_path / "run"
    proc = _dlsteps("run", _write_config(tmp_path), "--to", "full-data", "--run-dir", run_dir)
    _wait_for_step(run_dir / "full-data", at, proc)
    proc.send_signal(signum)
    code, err = _finish(proc)
    assert code == 130, err
    assert "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    entry = summary["stages"][-1]
    assert (entry["name"], entry["status"]) == ("full-data", "interrupted")
    stopped = entry["step"]
    assert at <= stopped < 40, "the step in flight finishes, and the run stops right after"
    assert torch.load(run_dir / "full-data" / "checkpoint.pt", weights_only=True)["step"] == stopped
    before = {s: (run_dir / s / "scalars.jsonl").stat().st_mtime_ns for s in STAGES[:2]}

    code, err = _finish(_dlsteps("run", "--resume", run_dir))  # CONFIG from the run dir
    assert code == ref_code, err
    note = f"{signal.Signals(signum).name} after step {stopped}"
    _assert_same_logbooks(run_dir, ref_dir, note)
    # the stages that had passed were kept, not run again
    assert {s: (run_dir / s / "scalars.jsonl").stat().st_mtime_ns for s in STAGES[:2]} == before
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [e["status"] for e in summary["stages"]] == [
        e["status"] for e in json.loads((ref_dir / "summary.json").read_text())["stages"]
    ]
    assert len(summary["resumed"]) == 1


@pytest.mark.slow
@pytest.mark.xdist_group("resume-reference")  # one worker computes the reference
def test_kill_9_then_resume_leaves_no_duplicate_and_no_missing_step(
    reference: tuple[Path, int], tmp_path: Path
) -> None:
    ref_dir, ref_code = reference
    at = random.randint(9, 30)  # past the first periodic checkpoint (step 7)
    run_dir = tmp_path / "run"
    config = _write_config(tmp_path)
    proc = _dlsteps("run", config, "--to", "full-data", "--run-dir", run_dir)
    _wait_for_step(run_dir / "full-data", at, proc)
    proc.kill()
    proc.wait()
    # a kill at any point leaves summary.json valid: the stage still says running
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stages"][-1]["status"] == "running"
    saved = torch.load(run_dir / "full-data" / "checkpoint.pt", weights_only=True)["step"]
    logged = max(step for step, tag in _all_keys(run_dir / "full-data") if tag == "train/loss")
    assert saved % 7 == 0 and saved <= logged

    code, err = _finish(_dlsteps("run", config, "--resume", run_dir))
    assert code == ref_code, err
    note = f"kill -9 after step {logged}, checkpoint at {saved}"
    _assert_same_logbooks(run_dir, ref_dir, note)
    # TensorBoard: the purge step hides what the killed attempt logged after the checkpoint
    events = EventAccumulator(str(run_dir / "full-data"), size_guidance={"scalars": 0})
    events.Reload()
    reference_steps = [s for s, tag, _ in _rows(ref_dir / "full-data") if tag == "train/loss"]
    for tag in ("train/loss", "val/loss"):
        steps = [e.step for e in events.Scalars(tag)]
        assert sorted(steps) == reference_steps, f"{tag}: {note}"


def test_same_config_and_seed_give_bitwise_identical_logbooks(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    for name in ("a", "b"):
        opts = RunOptions(only=["full-data"], run_dir=tmp_path / name, quiet=True)
        run_ladder(load_config(config, ["stages.full-data.steps=20"]), opts)
    rows = _rows(tmp_path / "a" / "full-data")
    assert len([r for r in rows if r[1] == "train/loss"]) == 20
    assert rows == _rows(tmp_path / "b" / "full-data")


def test_resuming_a_finished_run_runs_nothing(tmp_path: Path) -> None:
    config = load_config(_write_config(tmp_path), ["stages.full-data.steps=5"])
    run_dir = tmp_path / "run"
    first, code = run_ladder(config, RunOptions(only=["full-data"], run_dir=run_dir, quiet=True))
    logbook = run_dir / "full-data" / "scalars.jsonl"
    before = logbook.read_bytes()
    again, again_code = run_ladder(config, RunOptions(resume=run_dir, quiet=True))
    assert again_code == code
    assert again["stages"] == first["stages"]
    assert logbook.read_bytes() == before


def test_checkpoint_round_trip_restores_training_state_and_every_rng(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.9**s)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    live = Trainables(model, optimizer, scheduler)
    state = checkpoint.capture(
        live, stage="full-data", step=3, val_batch=3, config="abc", finished=None, seconds=1.0
    )
    checkpoint.save(StageDir(tmp_path, writes=True), state)
    after = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])

    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    other_opt = torch.optim.Adam(other.parameters(), lr=0.1)
    other_sched = torch.optim.lr_scheduler.LambdaLR(other_opt, lambda s: 0.9**s)
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    loaded = checkpoint.load(tmp_path / "checkpoint.pt", "abc")  # weights_only=True inside
    checkpoint.restore(Trainables(other, other_opt, other_sched), loaded)
    assert torch.equal(torch.rand(4), after[0])
    assert np.array_equal(np.random.rand(4), after[1])
    assert [random.random() for _ in range(4)] == after[2]
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert other_sched.last_epoch == 1 and other_opt.param_groups[0]["lr"] == pytest.approx(0.09)
    assert loaded["data"] == {"train_batch": 3, "val_batch": 3}


def test_truncate_keeps_rows_up_to_the_checkpoint_and_drops_a_torn_line(tmp_path: Path) -> None:
    with Logbook.files(tmp_path) as book:
        book.write([Row(0, "baseline/val_loss", 1.0)])
        book.write([Row(s, "train/loss", 1.0 / s) for s in range(1, 11)])
    with (tmp_path / "scalars.jsonl").open("a") as fh:
        fh.write('{"step": 11, "tag": "train/lo')  # the half line a kill -9 leaves
    assert StageDir(tmp_path, writes=True).truncate_logbook(7) == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "scalars.jsonl").open()]
    assert steps == [0, 1, 2, 3, 4, 5, 6, 7]


def test_resumed_early_stop_check_sees_the_losses_logged_before_the_checkpoint(
    tmp_path: Path,
) -> None:
    window = 4
    with Logbook.files(tmp_path) as book:
        book.write([Row(s, "train/loss", v) for s, v in enumerate([3.0, 2.0, 0.1, 0.1], 1)])
    seen: list[list[float]] = []

    def below_one(recent) -> bool:
        seen.append(list(recent))
        return len(recent) == window and float(np.mean(recent)) < 1.0

    # the uninterrupted run's window at step 5 holds steps 2-5: mean 0.575, so it stops
    assert not below_one(deque([0.1], maxlen=window))  # what a fresh window would say
    logged = read_curves(tmp_path).get_curve("train/loss").values
    check = EarlyStop(window, below_one, primed=logged)  # what a resumed stage builds
    assert check is not None
    assert check.at_flush(Progress(5, 10, 0.1, None, 1.0, [0.1]))
    assert seen[-1] == [2.0, 0.1, 0.1, 0.1]


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_a_damaged_or_foreign_checkpoint_is_a_user_error_naming_the_key(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save({"model": {}}, path)  # a plain state dict, not a dlsteps checkpoint
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=r"^init_from: .*checkpoint"):
        checkpoint.read(path, "init_from")
