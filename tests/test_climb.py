"""dlsteps.climb: the ladder from Python with objects, writing the same run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dlsteps
from dlsteps.data.tensors import TensorPairs
from dlsteps.errors import ConfigError


def _blobs(n: int, seed: int) -> TensorPairs:
    """Two classes of 8-dimensional points, 2 units apart."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    return TensorPairs(torch.randn(n, 8, generator=gen) + 2.0 * y[:, None], y, 2)


@pytest.mark.slow
def test_climb_takes_objects_and_returns_the_verdicts(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def my_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return F.cross_entropy(out, y)

    summary = dlsteps.climb(
        model,
        _blobs(256, 0),
        _blobs(64, 1),
        task="classification",
        loss=my_loss,
        run_dir=tmp_path / "run",
        to_stage="full-data",
        quiet=True,
        device="cpu",
        optim={"lr": 0.01},
        data={"batch_size": 32},
        stages={"full-data": {"epochs": 4}},
    )
    assert summary.status == "passed" and summary.exit_code == 0
    assert [(s.name, s.status) for s in summary.stages] == [
        ("preflight", "passed"), ("overfit-one", "passed"),
        ("overfit-few", "passed"), ("full-data", "passed"),
    ]  # fmt: skip
    assert summary["full-data"].figures["baseline_val_loss"] > 0.5  # measured, for my_loss
    assert calls  # the loss handed over is the one trained with
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [s["status"] for s in on_disk["stages"]] == [s.status for s in summary.stages]
    assert (tmp_path / "run" / "report.html").exists()
    for key, value in model.state_dict().items():  # every stage trained a copy
        torch.testing.assert_close(value, before[key])


def test_climb_reports_a_broken_pipeline_and_bad_keys(tmp_path: Path) -> None:
    class Frozen(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(8, 2)
            self.lin.requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    summary = dlsteps.climb(Frozen(), _blobs(64, 0), _blobs(16, 1), task="classification",
                            run_dir=tmp_path / "run", to_stage="preflight", quiet=True)  # fmt: skip
    assert summary.status == "failed" and summary.exit_code == 1
    assert summary["preflight"].diagnoses[0].code == "no_gradient"
    with pytest.raises(ConfigError, match=r"unknown key 'optim\.lrr'"):
        dlsteps.climb(Frozen(), _blobs(8, 0), _blobs(8, 1), task="classification",
                      optim={"lrr": 1.0}, run_dir=tmp_path / "r2")  # fmt: skip
    with pytest.raises(ConfigError, match=r"data\.name is set by the train and val"):
        dlsteps.climb(Frozen(), _blobs(8, 0), _blobs(8, 1), task="classification",
                      data={"name": "digits"})  # fmt: skip


def test_importing_dlsteps_loads_no_torch_until_climb_is_used() -> None:
    import subprocess
    import sys

    code = (
        "import sys, dlsteps; assert 'torch' not in sys.modules; dlsteps.climb; "
        "assert 'torch' in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
