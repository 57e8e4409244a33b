"""The user's code raising at a random point, drawn by hypothesis: a data set's
``__getitem__`` at a random index (after a random number of reads), or the model's
``forward`` at a random training step. Each time: exit 2 with the code, the index or step
named, no traceback, the logbook kept up to that point (every step before it, each once),
and ``summary.json`` consistent (the run and the stage ``error``, never ``running``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

STEPS = 24
PLUGIN = """
import torch
from torch import nn
from torch.utils.data import Dataset


class Flaky(Dataset):
    '''Item `index` raises once it has been read `after` times overall.'''

    def __init__(self, index, after):
        self.index, self.after, self.reads = index, after, 0
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 8, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self):
        return 64

    def __getitem__(self, i):
        self.reads += 1
        if i == self.index and self.reads > self.after:
            raise ValueError(f"cannot decode item {i}")
        return self.x[i], self.y[i]


def data(index=-1, after=0):
    return Flaky(index, after), Flaky(-1, 0)


class Brittle(nn.Module):
    '''Raises in its `fail_at`-th training forward: the training step of that number.'''

    def __init__(self, fail_at=10**9):
        super().__init__()
        self.fail_at, self.calls = fail_at, 0
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("shape [8, 3] is invalid for input of size 20")
        return self.net(x)
"""


def _run(cli: Any, tmp: Path, data_args: dict, model_args: dict) -> Any:
    (tmp / "userplug.py").write_text(PLUGIN)
    config = {
        "task": "classification",
        "device": "cpu",
        "data": {"name": "userplug:data", "args": data_args, "batch_size": 8, "num_workers": 0},
        "model": {"name": "userplug:Brittle", "args": model_args},
        "log": {"flush_every": 5},
        "stages": {"full-data": {"steps": STEPS}},
    }
    (tmp / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(tmp))
        return cli("stage", "full-data", "-c", "c.yaml", "--run-dir", "run", "-q", cwd=tmp)


def _consistent(result: Any, run_dir: Path, code: str) -> tuple[dict, list[int]]:
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "error"
    (entry,) = summary["stages"]
    assert entry["status"] == "error" and [d["code"] for d in entry["diagnoses"]] == [code]
    assert entry["error"] in result.err, "the summary records what was said"
    lines = (run_dir / "full-data" / "scalars.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line whole
    keys = [(r["step"], r["tag"]) for r in rows]
    assert len(keys) == len(set(keys)), "a value logged twice"
    steps = [r["step"] for r in rows if r["tag"] == "train/loss"]
    assert steps == list(range(1, len(steps) + 1)), "every step up to the failure, in order"
    return entry, steps


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(step=st.integers(1, STEPS))
def test_forward_raising_at_a_random_step_names_it_and_keeps_the_logbook(
    cli, tmp_path_factory, step
):
    tmp = tmp_path_factory.mktemp("forward")
    result = _run(cli, tmp, {}, {"fail_at": step})
    entry, steps = _consistent(result, tmp / "run", "model_error")
    assert f"step {step} (train step" in result.err or (
        step == 1 and "the first training step raised" in result.err
    )
    assert entry["diagnoses"][0]["step"] == step
    assert steps == list(range(1, step)), "every step before the failing one was logged"


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(index=st.integers(0, 63), after=st.integers(64, 150))
def test_getitem_raising_at_a_random_index_names_it_and_keeps_the_logbook(
    cli, tmp_path_factory, index, after
):
    tmp = tmp_path_factory.mktemp("getitem")
    result = _run(cli, tmp, {"index": index, "after": after}, {})
    if result.code != 2:  # the index was not drawn again within the stage's batches
        assert result.code in (0, 1), result.err
        return
    _, steps = _consistent(result, tmp / "run", "data_error")
    assert f"train item {index}" in result.err
    assert len(steps) < STEPS
