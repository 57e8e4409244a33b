"""Two processes on one run directory, and damaged files on ``--resume``.

A second process (a ``--resume`` of a running run, or of a trial an ablation worker is
training) refuses, naming the first's PID and host; after ``kill -9`` the stale lock is
taken over. A checkpoint cut short, a ``summary.json`` or ``scalars.jsonl`` cut mid-line,
garbage inside the logbook and a checkpoint of another dlsteps version are each named,
with what to do, exit 2; a torn last logbook line (a kill during an append) is dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dlsteps.config import load_config
from dlsteps.errors import RunLocked
from dlsteps.ladder.runner import RunOptions, run_ladder
from dlsteps.rundir import lock
from dlsteps.train.engine import Callback

CONFIG: dict[str, Any] = {
    "name": "locks",
    "task": "segmentation",
    "seed": 0,
    "device": "cpu",
    "data": {
        "name": "shapes",
        "args": {"num_train": 32, "num_val": 16, "size": 16},
        "batch_size": 8,
    },
    "model": {"name": "unet", "args": {"width": 4, "depth": 2, "batchnorm": False}},
    "log": {"flush_every": 1, "checkpoint_every": 5},
    "stages": {"full-data": {"steps": 24, "gate": {"max_batch_seconds": 10.0}}},
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
INTERRUPTED_AT = 17


def _config(directory: Path, **stage: Any) -> Path:
    data = json.loads(json.dumps(CONFIG))
    data["stages"]["full-data"].update(stage)
    path = directory / "locks.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _dlsteps(*args: Any) -> subprocess.Popen:
    command = [sys.executable, "-m", "dlsteps", *map(str, args)]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen, needle: str = "") -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(f"it ended first: {proc.stderr.read().decode()}")
        time.sleep(0.02)
    pytest.fail(f"{path} never showed {needle!r}")


@pytest.mark.slow
def test_a_second_resume_refuses_naming_pid_and_host_then_a_stale_lock_is_taken_over(cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = _dlsteps(
        "stage", "full-data", "-c", _config(tmp_path, steps=5000), "--run-dir", run_dir, "-q"
    )
    try:
        _wait_for(run_dir / "full-data" / "scalars.jsonl", proc, '"step": 6, "tag": "train/loss"')
        held = json.loads((run_dir / "run.lock").read_text())
        assert held["pid"] == proc.pid and held["host"] == socket.gethostname()
        result = cli("run", "--resume", run_dir, "--quiet")
        assert result.code == 2 and "Traceback" not in result.err
        assert f"PID {proc.pid}" in result.err and socket.gethostname() in result.err
        assert proc.poll() is None, "the first process runs on, untouched"
    finally:
        proc.kill()
        proc.wait()
    assert json.loads((run_dir / "run.lock").read_text())["pid"] == proc.pid  # stale now
    saved = torch.load(run_dir / "full-data" / "checkpoint.pt", weights_only=True)["step"]
    stop = Stopper(saved + 2)  # the resume runs two steps, then a real SIGINT stops it
    summary, code = run_ladder(
        load_config(run_dir / "config.yaml"), RunOptions(resume=run_dir, callbacks=[stop])
    )
    assert stop.fired and code == 130
    assert summary["stages"][-1]["status"] == "interrupted"
    assert not (run_dir / "run.lock").exists(), "taken over, then released at the end"


def test_the_stale_lock_takeover_is_said(cli, tmp_path):
    run_dir = tmp_path / "run"
    run_ladder(
        load_config(_config(tmp_path, steps=3)),
        RunOptions(only=["full-data"], run_dir=run_dir, quiet=True),
    )
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    pid = int(dead.stdout)
    stale = {"pid": pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00"}
    (run_dir / "run.lock").write_text(json.dumps(stale))
    result = cli("run", "--resume", run_dir)
    assert result.code in (0, 1), result.err
    assert f"took over a stale run.lock of PID {pid}" in result.err
    assert not (run_dir / "run.lock").exists()


def test_a_lock_held_on_another_host_is_refused_with_how_to_break_it(tmp_path):
    (tmp_path / "run.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "t"}))
    refused = pytest.raises(RunLocked, match=r"PID 1 on host elsewhere.*delete .*run\.lock")
    with refused, lock.locked(tmp_path, []):
        pass
    # and this process's own lock is released when the block ends, even on an error
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ZeroDivisionError), lock.locked(other, []):
        assert lock.holder(other)["pid"] == os.getpid()
        raise ZeroDivisionError
    assert lock.holder(other) is None


class Stopper(Callback):
    """SIGINT to this very process after ``step``: the real interrupt path."""

    def __init__(self, step: int) -> None:
        self.step, self.fired = step, False

    def after_step(self, step: int) -> None:
        if step == self.step and not self.fired:
            self.fired = True
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_an_ablation_worker_holds_its_trial_against_a_resume(cli, tmp_path):
    ablation = tmp_path / "ablation"
    proc = _dlsteps(
        "ablate",
        _config(tmp_path, steps=5000),
        "--grid",
        "optim.lr=1e-3,3e-3",
        "--stage",
        "full-data",
        "--no-prune",
        "--run-dir",
        ablation,
    )
    trial = ablation / "trials" / "000"
    try:
        _wait_for(trial / "full-data" / "scalars.jsonl", proc, '"step": 3, "tag": "train/loss"')
        result = cli("run", "--resume", trial, "--quiet")
        assert result.code == 2 and f"PID {proc.pid}" in result.err, result.err
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    assert not (trial / "run.lock").exists(), "the worker released it as the trial ended"


# -- damaged files ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose full-data stage was interrupted at step 17 (checkpoint at 17)."""
    base = tmp_path_factory.mktemp("interrupted")
    run_dir = base / "run"
    opts = RunOptions(
        only=["full-data"], run_dir=run_dir, quiet=True, callbacks=[Stopper(INTERRUPTED_AT)]
    )
    summary, _ = run_ladder(load_config(_config(base)), opts)
    assert summary["stages"][-1]["status"] == "interrupted"
    return run_dir


def _copy(interrupted: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(interrupted, run_dir)
    return run_dir


def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _refused(cli: Any, run_dir: Path, *needles: str) -> dict[str, Any] | None:
    result = cli("run", "--resume", run_dir, "--quiet")
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in result.err, result.err
    assert not (run_dir / "run.lock").exists()
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except json.JSONDecodeError:
        return None  # the damaged summary itself: left as it was for the user to see
    assert summary["status"] != "running"
    assert all(e["status"] != "running" for e in summary["stages"])
    return summary


def test_a_truncated_checkpoint_is_named_and_deleting_it_restarts_the_stage(
    cli, interrupted, tmp_path
):
    run_dir = _copy(interrupted, tmp_path)
    ckpt = run_dir / "full-data" / "checkpoint.pt"
    _cut(ckpt, 0.5)
    summary = _refused(cli, run_dir, str(ckpt), "Delete it")
    assert summary is not None and summary["stages"][-1]["status"] == "error"
    ckpt.unlink()  # what the message says to do
    result = cli("run", "--resume", run_dir, "--quiet")
    assert result.code in (0, 1), result.err
    steps = [
        json.loads(line)["step"]
        for line in (run_dir / "full-data" / "scalars.jsonl").read_text().splitlines()
        if '"train/loss"' in line
    ]
    assert steps == list(range(1, 25)), "trained again from step 0, each step once"


def test_a_summary_cut_mid_line_is_named(cli, interrupted, tmp_path):
    run_dir = _copy(interrupted, tmp_path)
    _cut(run_dir / "summary.json", 0.6)
    assert _refused(cli, run_dir, str(run_dir / "summary.json"), "damaged", "new run") is None


def test_a_logbook_cut_mid_line_before_the_checkpoint_is_named(cli, interrupted, tmp_path):
    run_dir = _copy(interrupted, tmp_path)
    logbook = run_dir / "full-data" / "scalars.jsonl"
    _cut(logbook, 0.5)
    _refused(cli, run_dir, str(logbook), "cut short", f"checkpoint is at step {INTERRUPTED_AT}")


def test_garbage_inside_the_logbook_is_named_with_its_line(cli, interrupted, tmp_path):
    run_dir = _copy(interrupted, tmp_path)
    logbook = run_dir / "full-data" / "scalars.jsonl"
    lines = logbook.read_text().splitlines()
    lines[10] = "\x00\x00garbage{"
    logbook.write_text("\n".join(lines) + "\n")
    _refused(cli, run_dir, str(logbook), "line 11", "damaged")


def test_a_torn_last_logbook_line_from_a_kill_is_dropped_and_the_run_continues(
    cli, interrupted, tmp_path
):
    run_dir = _copy(interrupted, tmp_path)
    logbook = run_dir / "full-data" / "scalars.jsonl"
    with logbook.open("a") as fh:
        fh.write('{"step": 18, "tag": "train/lo')
    result = cli("run", "--resume", run_dir, "--quiet")
    assert result.code in (0, 1), result.err
    keys = [(r["step"], r["tag"]) for r in map(json.loads, logbook.read_text().splitlines())]
    assert len(keys) == len(set(keys))
    assert [s for s, tag in keys if tag == "train/loss"] == list(range(1, 25))


def test_a_checkpoint_of_another_dlsteps_version_is_named(cli, interrupted, tmp_path):
    run_dir = _copy(interrupted, tmp_path)
    ckpt = run_dir / "full-data" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["dlsteps"] = "0.0.9"
    torch.save(state, ckpt)
    _refused(cli, run_dir, str(ckpt), "dlsteps 0.0.9", "dlsteps==0.0.9")
