"""``dlsteps init``: a starter project that passes the whole ladder as generated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dlsteps.config import load_config

FILES = ("dlsteps.yaml", "my_data.py", "my_model.py")


def test_init_writes_a_valid_commented_project(cli, tmp_path: Path) -> None:
    result = cli("init", tmp_path / "demo")
    assert result.code == 0, result.err
    assert "dlsteps run dlsteps.yaml" in result.out
    for name in FILES:
        text = (tmp_path / "demo" / name).read_text()
        assert text.count("#") >= 5 or text.startswith('"""'), name  # commented
    loaded = load_config(tmp_path / "demo" / "dlsteps.yaml")
    assert loaded.base.data.name == "my_data:stripes"
    assert loaded.plan("scale-up").config.model.args["width"] > loaded.base.model.args["width"]


def test_init_never_overwrites(cli, tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "my_model.py").write_text("# mine\n")
    result = cli("init", demo)
    assert result.code == 2
    assert "my_model.py" in result.err and "never overwrites" in result.err
    assert (demo / "my_model.py").read_text() == "# mine\n"
    assert not (demo / "dlsteps.yaml").exists()  # nothing half-written


@pytest.mark.parametrize("task", ["segmentation", "regression", "multilabel"])
def test_init_writes_a_starter_for_each_task(cli, tmp_path: Path, task: str) -> None:
    result = cli("init", tmp_path / task, "--task", task)
    assert result.code == 0, result.err
    loaded = load_config(tmp_path / task / "dlsteps.yaml")
    assert loaded.base.task == task and loaded.base.data.name.startswith("my_data:")
    for name in FILES:
        text = (tmp_path / task / name).read_text()
        assert text.count("#") >= 5 or text.startswith('"""'), name  # commented
    bad = cli("init", tmp_path / "x", "--task", "detection")
    assert bad.code == 2 and "classification, segmentation, regression, multilabel" in bad.err


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classification", "segmentation", "regression", "multilabel"])
def test_init_then_run_passes_every_stage(cli, tmp_path: Path, task: str) -> None:
    """The README's promise: dlsteps init demo && cd demo && dlsteps run dlsteps.yaml (the
    run in a fresh process, as a user types it, so my_data/my_model import from there)."""
    assert cli("init", "demo", "--task", task, cwd=tmp_path).code == 0
    exe = shutil.which("dlsteps", path=str(Path(sys.executable).parent)) or "dlsteps"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    demo = tmp_path / "demo"
    proc = subprocess.run(
        [exe, "run", "dlsteps.yaml"], cwd=demo, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (demo / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    stages = {s["name"]: s["status"] for s in summary["stages"]}
    assert stages == dict.fromkeys(
        ("preflight", "overfit-one", "overfit-few", "full-data", "augment", "scale-up"), "passed"
    )
    assert (run_dir / "report.html").exists()
    assert "report:" in proc.stderr
