"""Atomic files: a ``kill -9`` at any instant leaves the old or the new content, never half
of either; a failed write leaves the old file; a checkpoint cannot carry code."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from dlsteps.errors import UserError
from dlsteps.rundir.atomic import write_json
from dlsteps.rundir.run import StageDir
from dlsteps.train import checkpoint

PAD = 200_000  # large enough that one write spans many syscalls


def _rewrite_forever(path: str) -> None:
    n = 0
    while True:
        n += 1
        write_json(Path(path), {"n": n, "pad": "x" * PAD, "stages": [{"status": "running"}]})


def test_kill_9_at_random_moments_never_leaves_a_torn_summary(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"n": 0, "pad": "x" * PAD, "stages": []})
    fork = multiprocessing.get_context("fork")
    seen = set()
    for _ in range(20):
        writer = fork.Process(target=_rewrite_forever, args=(str(path),), daemon=True)
        writer.start()
        time.sleep(random.uniform(0.005, 0.05))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        data = json.loads(path.read_text())  # raises on a torn file
        assert len(data["pad"]) == PAD
        seen.add(data["n"])
    assert len(seen) > 1, "the writer never got to replace the file; the test proved nothing"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "summary.json"]
    assert all(n.startswith(".summary.json.") and n.endswith(".tmp") for n in leftovers)


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    stage = StageDir(tmp_path, writes=True)
    path = stage.checkpoint
    checkpoint.save(stage, {"step": 1})
    with pytest.raises(Exception, match="pickle"):
        checkpoint.save(stage, {"step": 2, "fn": lambda: None})  # cannot be pickled
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_files_get_the_umask_mode_not_mkstemps_private_one(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    write_json(tmp_path / "summary.json", {})
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o666 & ~umask


class _Payload:
    """What a malicious checkpoint would unpickle (and run) with weights_only=False."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_checkpoint_that_carries_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": checkpoint.FORMAT, "config_hash": "x", "evil": _Payload()}, path)
    with pytest.raises(UserError, match="cannot read the checkpoint"):
        checkpoint.load(path, "x")
