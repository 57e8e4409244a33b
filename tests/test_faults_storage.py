"""A full disk and folders that cannot be written: the run stops with one message and exit
2, nothing is half-written, and ``--resume`` continues once space is back with no step lost
or doubled (the resumed logbook equals an uninterrupted run's, measurements aside).

The disk fills at a random write of the logbook, of a checkpoint (``torch.save``) or of
``summary.json`` (an ``OSError(ENOSPC)`` raised part-way through the real write), and once
for real on a small tmpfs (skipped, with the reason, where it cannot be mounted).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dlsteps.config import load_config
from dlsteps.ladder.runner import RunOptions, run_ladder
from dlsteps.rundir import atomic, run
from dlsteps.train import checkpoint

CONFIG: dict[str, Any] = {
    "name": "faults",
    "task": "segmentation",
    "seed": 0,
    "device": "cpu",
    "data": {
        "name": "shapes",
        "args": {"num_train": 32, "num_val": 16, "size": 16},
        "batch_size": 8,
    },
    "model": {"name": "unet", "args": {"width": 4, "depth": 2, "batchnorm": False, "dropout": 0.2}},
    "log": {"flush_every": 1, "checkpoint_every": 5},
    "stages": {"full-data": {"steps": 30, "gate": {"max_batch_seconds": 10.0}}},
}
STEPS = 30
MEASURED = ("time/", "mem/")  # readings of the machine, not of the training


def _config(directory: Path) -> Path:
    path = directory / "faults.yaml"
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return path


def rows(stage_dir: Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every logged value in file order; every line must parse."""
    out = []
    for line in (stage_dir / "scalars.jsonl").read_text().splitlines():
        rec = json.loads(line)  # a half-written line fails here
        if not rec["tag"].startswith(MEASURED):
            out.append((rec["step"], rec["tag"], rec["value"]))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, str, float]]:
    base = tmp_path_factory.mktemp("reference")
    opts = RunOptions(only=["full-data"], run_dir=base / "run", quiet=True)
    run_ladder(load_config(_config(base)), opts)
    return rows(base / "run" / "full-data")


def _enospc(path: object) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _assert_stopped_cleanly(result: Any, run_dir: Path) -> None:
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    assert "No space left on device" in result.err and f"--resume {run_dir}" in result.err
    summary = json.loads((run_dir / "summary.json").read_text())  # whole, never torn
    assert not list(run_dir.rglob(".*.tmp")), "a temporary file was left behind"
    stage = run_dir / "full-data"
    if (stage / "checkpoint.pt").exists():  # the old one or the new one, never half
        checkpoint.read(stage / "checkpoint.pt", "test")
    rows(stage)
    entry = summary["stages"][-1]
    if summary["status"] == "error":
        assert [d["code"] for d in entry["diagnoses"]] == ["storage_error"]
    else:  # the disk refused the record of the error itself: a crash, to --resume
        assert entry["status"] in ("running", "passed", "failed")
    assert not (run_dir / "run.lock").exists()


def _resume_matches(cli: Any, run_dir: Path, reference: list, note: str) -> None:
    result = cli("run", "--resume", run_dir, "--quiet")
    assert result.code in (0, 1), result.err
    got = rows(run_dir / "full-data")
    assert got == reference, f"resumed logbook differs from the uninterrupted one ({note})"
    steps = [s for s, tag, _ in got if tag == "train/loss"]
    assert steps == list(range(1, STEPS + 1)), note
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] in ("passed", "failed") and summary["resumed"]


@pytest.mark.slow
def test_disk_full_in_a_logbook_append_then_resume(cli, tmp_path, monkeypatch, reference):
    """The kernel takes half the chunk, then the disk is full: the half is cut back."""
    fail_at = random.randint(3, STEPS - 2)
    real_write, calls = os.write, {"n": 0}

    def write(fd: int, data: Any) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("scalars.jsonl"):
            calls["n"] += 1
            if calls["n"] == fail_at:
                real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(os, "write", write)
        result = cli("stage", "full-data", "-c", _config(tmp_path), "--run-dir", run_dir)
    _assert_stopped_cleanly(result, run_dir)
    assert "scalars.jsonl" in result.err
    _resume_matches(cli, run_dir, reference, f"logbook append {fail_at} refused")


@pytest.mark.slow
def test_disk_full_in_a_checkpoint_save_then_resume(cli, tmp_path, monkeypatch, reference):
    fail_at = random.randint(2, STEPS // 5)  # a periodic checkpoint (every 5 steps)
    real_save, calls = torch.save, {"n": 0}

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == fail_at and hasattr(f, "write"):
            f.write(b"PK\x03\x04 half a checkpoint")
            raise _enospc(getattr(f, "name", "checkpoint"))
        real_save(obj, f, *args, **kwargs)

    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(torch, "save", save)
        result = cli("stage", "full-data", "-c", _config(tmp_path), "--run-dir", run_dir)
    _assert_stopped_cleanly(result, run_dir)
    saved = torch.load(run_dir / "full-data" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == (fail_at - 1) * 5, "the checkpoint before the refused one is kept"
    _resume_matches(cli, run_dir, reference, f"checkpoint save {fail_at} refused")


@pytest.mark.slow
@pytest.mark.parametrize("fail_at", [2, 3], ids=["stage-record", "run-record"])
def test_disk_full_in_the_summary_write_then_resume(cli, tmp_path, monkeypatch, reference, fail_at):
    """The 2nd write records the finished stage, the 3rd the run's status."""
    real, calls = run.write_json, {"n": 0}

    def write_json(path: Path, obj: Any) -> None:
        if path.name == "summary.json":
            calls["n"] += 1
            if calls["n"] == fail_at:

                def half(fh: Any) -> None:
                    fh.write(json.dumps(obj).encode()[:20])
                    raise _enospc(path)

                atomic.write_with(path, half)  # the real write path, refused part-way
        real(path, obj)

    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(run, "write_json", write_json)
        result = cli("stage", "full-data", "-c", _config(tmp_path), "--run-dir", run_dir)
    _assert_stopped_cleanly(result, run_dir)
    assert "summary.json" in result.err
    _resume_matches(cli, run_dir, reference, f"summary write {fail_at} refused")


def _mount_tmpfs(where: Path, size: int) -> str | None:
    """Mount a tmpfs of ``size`` bytes; the reason when this machine cannot."""
    if shutil.which("mount") is None or not sys.platform.startswith("linux"):
        return "no mount command (Linux only)"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})"
    return None


@pytest.mark.slow
def test_a_real_full_disk_on_a_small_tmpfs_then_resume_once_space_is_back(cli, tmp_path, reference):
    probe = tmp_path / "probe"
    run_ladder(
        load_config(_config(tmp_path), ["stages.full-data.steps=1"]),
        RunOptions(only=["full-data"], run_dir=probe, quiet=True),
    )
    ckpt_bytes = (probe / "full-data" / "checkpoint.pt").stat().st_size
    disk = tmp_path / "disk"
    size = 4 * ckpt_bytes + 256 * 1024
    if (reason := _mount_tmpfs(disk, size)) is not None:
        pytest.skip(reason)
    try:
        # leave room for one checkpoint and a little logbook: the second checkpoint's
        # temporary copy (beside the first) or the growing logbook runs out of space
        free = shutil.disk_usage(disk).free
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * max(0, free - int(1.6 * ckpt_bytes) - 24 * 1024))
        run_dir = disk / "run"
        result = cli("stage", "full-data", "-c", _config(tmp_path), "--run-dir", run_dir)
        _assert_stopped_cleanly(result, run_dir)
        ballast.unlink()  # space is back
        _resume_matches(cli, run_dir, reference, "a real full tmpfs")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_an_unwritable_run_dir_exits_2_naming_it_before_any_training(cli, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    config = _config(tmp_path)
    for run_dir in (blocked / "run", Path("/proc/dlsteps-run")):
        result = cli("stage", "full-data", "-c", config, "--run-dir", run_dir)
        assert result.code == 2 and "Traceback" not in result.err
        assert str(run_dir) in result.err and "write" in result.err
    assert not list(tmp_path.rglob("scalars.jsonl")), "nothing trained"


def test_a_read_only_run_dir_exits_2_naming_it(cli, tmp_path):
    """chmod does not stop root: a read-only bind mount does, where it can be made."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o500)
    else:
        done = subprocess.run(
            ["mount", "--bind", "-o", "ro", str(target), str(target)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot make a read-only folder as root here: {done.stderr!r}")
    try:
        result = cli("stage", "full-data", "-c", _config(tmp_path), "--run-dir", target / "run")
        assert result.code == 2 and "Traceback" not in result.err
        assert str(target / "run") in result.err
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(target)], check=False)
        target.chmod(0o700)


def test_a_missing_resume_folder_exits_2_naming_it(cli, tmp_path):
    missing = tmp_path / "no-such-run"
    for args in (("run", "--resume", missing), ("run", _config(tmp_path), "--resume", missing)):
        result = cli(*args)
        assert result.code == 2 and "Traceback" not in result.err
        assert f"--resume {missing}" in result.err and "does not exist" in result.err


@pytest.mark.slow
def test_a_run_dir_with_spaces_and_non_ascii_climbs_resumes_and_reports(cli, tmp_path):
    run_dir = tmp_path / "mes runs ü 日本" / "run é 1"
    config = _config(tmp_path)
    sets = ("--set", "stages.full-data.steps=6")
    result = cli("stage", "full-data", "-c", config, "--run-dir", run_dir, *sets, "--quiet")
    assert result.code in (0, 1), result.err
    assert (run_dir / "report.html").is_file()
    result = cli("run", "--resume", run_dir, "--quiet")
    assert result.code in (0, 1), result.err
    result = cli("report", run_dir)
    assert result.code == 0, result.err
    assert "report.html" in result.out
    assert len(rows(run_dir / "full-data")) > 0
