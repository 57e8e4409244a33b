"""Several processes: ``dlsteps run --nproc 2`` (DDP over gloo on CPU) trains the same curve
as one process with the same global batch, and only rank 0 writes anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dlsteps.logbook.curves import read_curves

# Two processes split every global batch of 8 into 4 + 4. Gradients are averaged by DDP
# and logged losses over ranks: the same numbers as one process up to float summation
# order (measured: < 3e-7 absolute over 16 Adam steps).
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
CONFIG = {
    "name": "ddp",
    "task": "segmentation",
    "seed": 0,
    "data": {
        "name": "shapes",
        "args": {"num_train": 64, "num_val": 16, "size": 16, "num_classes": 3, "max_shapes": 2},
        "batch_size": 8,
    },
    "model": {"name": "tiny_unet", "args": {"width": 8}},
    "optim": {"name": "adam", "lr": 0.003},
    "stages": {"full-data": {"epochs": 2}},
}


# Loaded by every interpreter of the run (sitecustomize): on rank 1 it notes each file the
# process opens for writing, at once, so the list survives torchrun stopping the rank.
WRITE_TRACER = """
import builtins, io, os
if os.environ.get("RANK") == "1":
    _log, _open, _os_open = os.environ["WRITES_LOG"], builtins.open, os.open
    def _note(path):
        with _open(_log, "a") as fh:
            fh.write(os.path.abspath(os.fsdecode(path)) + "\\n")
    def _traced_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            _note(file)
        return _open(file, mode, *args, **kwargs)
    def _traced_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            _note(path)
        return _os_open(path, flags, *args, **kwargs)
    builtins.open = io.open = _traced_open
    os.open = _traced_os_open
"""


def _dlsteps(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dlsteps", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _files(run_dir: Path) -> list[str]:
    """Relative paths, with TensorBoard's host/pid/time-stamped names made comparable."""
    out = []
    for path in sorted(run_dir.rglob("*")):
        if path.is_file():
            rel = path.relative_to(run_dir).as_posix()
            if ".tfevents." in rel:  # ...tfevents.<time>.<host>.<pid>.<count>[<suffix>]
                suffix = "" if path.suffix[1:].isdigit() else path.suffix
                rel = rel.split("events.out.tfevents.")[0] + "events" + suffix
            out.append(rel)
    return sorted(out)


@pytest.mark.slow
def test_two_gloo_processes_train_the_curve_of_one_and_only_rank_0_writes(cli, tmp_path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for work in (one, two):
        work.mkdir()
        (work / "ddp.yaml").write_text(yaml.safe_dump(CONFIG))
    args = ("run", "ddp.yaml", "--from", "full-data", "--to", "full-data", "--run-dir", "run")
    single = cli(*args, "--json", cwd=one)  # in this process
    tracer = tmp_path / "tracer"
    tracer.mkdir()
    (tracer / "sitecustomize.py").write_text(WRITE_TRACER)
    log = tmp_path / "rank1-writes.txt"
    path = os.pathsep.join([str(tracer), os.environ.get("PYTHONPATH", "")])
    double = _dlsteps(
        two, *args, "--json", "--nproc", "2", env={"PYTHONPATH": path, "WRITES_LOG": str(log)}
    )
    assert single.code in (0, 1), single.err
    # the launcher hands back rank 0's code: the same verdict, the same exit code
    assert double.returncode == single.code, double.stderr

    a, b = read_curves(one / "run" / "full-data"), read_curves(two / "run" / "full-data")
    for tag in ("train/loss", "val/loss", "grad/norm"):
        assert len(a[tag]) == len(b[tag]) == 16, tag
        np.testing.assert_array_equal(a[tag].steps, b[tag].steps)
        np.testing.assert_allclose(b[tag].values, a[tag].values, **TOLERANCE, err_msg=tag)

    summary = json.loads((two / "run" / "summary.json").read_text())
    notes = summary["stages"][0]["notes"]
    assert "DDP over 2 processes (gloo on cpu); each reads 1/2 of every global batch" in notes

    # rank 1 opened no file for writing under the run (the tracer saw it run: it logged
    # nothing there, but rank 1 existed, so its process imported the tracer)
    written = log.read_text().split() if log.exists() else []
    assert [p for p in written if p.startswith(str(two))] == []
    # only rank 0 wrote: the same files as one process (one event file per writer, no
    # second logbook, no stray runs/ directory), and every value logged exactly once
    assert sorted(p.name for p in two.iterdir()) == ["ddp.yaml", "run"]
    assert _files(two / "run") == _files(one / "run")
    rows = [json.loads(line) for line in (two / "run/full-data/scalars.jsonl").open()]
    keys = [(r["step"], r["tag"]) for r in rows]
    assert len(keys) == len(set(keys))
    # one summary on stdout (rank 0's): a second rank printing would break the JSON
    summaries = json.loads(double.stdout), json.loads(single.out)
    assert [s["status"] for s in summaries[0]["stages"]] == [
        s["status"] for s in summaries[1]["stages"]
    ]


@pytest.mark.slow
def test_a_global_batch_that_does_not_split_evenly_exits_2_once(tmp_path) -> None:
    (tmp_path / "ddp.yaml").write_text(
        yaml.safe_dump({**CONFIG, "data": {**CONFIG["data"], "batch_size": 7}})
    )
    result = _dlsteps(
        tmp_path, "run", "ddp.yaml", "--from", "full-data", "--run-dir", "run", "--nproc", "2"
    )
    assert result.returncode == 2
    assert result.stderr.count("data.batch_size: 7 is not divisible by the 2 processes") == 1
    assert "Traceback" not in result.stderr


def test_the_launcher_returns_rank_0s_code_even_when_torchrun_stopped_it() -> None:
    from dlsteps.train.distributed import _exit_code

    assert _exit_code({0: 1, 1: -15}) == 1  # rank 0 failed its gate; torchrun stopped rank 1
    assert _exit_code({0: -15, 1: 2}) == 2  # rank 1 failed alone first; rank 0 was stopped
    assert _exit_code({0: -2, 1: -2}) == 130  # Ctrl-C
