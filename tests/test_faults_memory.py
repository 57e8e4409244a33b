"""Memory refused: a step whose allocation fails becomes the ``out_of_memory`` diagnosis
naming the batch size that fits (found by halving), exit 2, never a crash.

For real on the CPU under ``RLIMIT_AS`` in a subprocess (torch imported first, then the
address space capped a little above what it holds: a batch of 2048 through a 200,000-wide
layer needs gigabytes), and the size it names is then run under the same cap; the CUDA
path with a model that raises ``torch.OutOfMemoryError`` above a batch size.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

PLUGIN = """
import torch
from torch import nn
from torch.utils.data import TensorDataset


def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=g)
    y = torch.randint(0, 4, (4096,), generator=g)
    return TensorDataset(x, y), TensorDataset(x[:32], y[:32])


def wide():
    # 200,000 activations per sample (0.8 MB): a batch of 2048 needs several GB
    return nn.Sequential(nn.Linear(16, 200_000), nn.ReLU(), nn.Linear(200_000, 4))


class Picky(nn.Module):
    '''Raises what CUDA raises when a batch above `limit` does not fit.'''

    def __init__(self, limit=3):
        super().__init__()
        self.limit, self.net = limit, nn.Linear(16, 4)

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.3 GiB total)"
            )
        return self.net(x)
"""

# torch and dlsteps first (their address space is not the step's), then the cap
CAPPED = """
import os, resource, sys
import torch
import dlsteps.cli, dlsteps.ladder.runner
torch.set_num_threads(1)
status = open("/proc/self/status").read()
vm = int(next(l for l in status.splitlines() if l.startswith("VmSize")).split()[1]) * 1024
cap = vm + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
sys.argv = ["dlsteps", *sys.argv[2:]]
dlsteps.cli.main()
"""
HEADROOM = 1_500_000_000  # bytes above what torch holds: room for a few hundred samples


def _project(tmp_path: Path, batch: int, model: str, steps: int = 3) -> Path:
    (tmp_path / "oom_plugin.py").write_text(PLUGIN)
    config = {
        "task": "classification",
        "device": "cpu",
        "data": {"name": "oom_plugin:data", "batch_size": batch, "num_workers": 0},
        "model": {"name": model},
        "stages": {"full-data": {"steps": steps, "val_every": 100}},
    }
    path = tmp_path / "oom.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _capped(tmp_path: Path, config: Path, run_dir: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    args = ["stage", "full-data", "-c", str(config), "--run-dir", str(run_dir), "--quiet"]
    return subprocess.run(
        [sys.executable, "-c", CAPPED, str(HEADROOM), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


def _entry(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] != "running"
    return summary["stages"][-1]


@pytest.mark.slow
def test_a_batch_refused_under_rlimit_as_names_the_size_that_fits_and_it_does(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS and /proc/self/status are Linux's")
    done = _capped(tmp_path, _project(tmp_path, 2048, "oom_plugin:wide"), tmp_path / "big")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    found = re.search(r"out of memory at batch size 2048 .*batch size (\d+) fits", done.stderr)
    assert found, done.stderr[-3000:]
    fits = int(found.group(1))
    assert fits < 2048 and 2048 % fits == 0, "a halving of the batch"
    entry = _entry(tmp_path / "big")
    assert entry["status"] == "error"
    assert [d["code"] for d in entry["diagnoses"]] == ["out_of_memory"]
    assert entry["diagnoses"][0]["step"] == 1

    # the size it names trains under the very same cap
    again = _capped(tmp_path, _project(tmp_path, fits, "oom_plugin:wide", 2), tmp_path / "fits")
    assert again.returncode in (0, 1), again.stderr[-3000:]
    assert _entry(tmp_path / "fits")["status"] in ("passed", "failed")


def test_cuda_out_of_memory_names_the_batch_size_found_by_halving(cli, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    config = _project(tmp_path, 32, "oom_plugin:Picky")
    result = cli("stage", "full-data", "-c", config, "--run-dir", tmp_path / "run")
    assert result.code == 2 and "Traceback" not in result.err
    assert "out of memory at batch size 32" in result.err
    assert "batch size 2 fits (found by halving 32)" in result.err  # 16, 8, 4 refused; 3 < 4
    assert "data.batch_size: 2" in result.err
    (d,) = _entry(tmp_path / "run")["diagnoses"]
    assert d["code"] == "out_of_memory" and d["step"] == 1


def test_not_even_one_sample_fitting_is_said(cli, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    config = _project(tmp_path, 8, "oom_plugin:Picky")
    result = cli(
        "stage", "full-data", "-c", config, "--run-dir", tmp_path / "run",
        "--set", "model.args.limit=0",
    )  # fmt: skip
    assert result.code == 2 and "not even one sample fits" in result.err
