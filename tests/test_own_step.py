"""``step: "package.module:function"``: the config's own training step on batches of any
structure (here a dict of two inputs and a label) climbs the ladder; a broken step is
stopped at preflight with the code that names it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlsteps.data.batches import batch_size, leaves, same, to_device

PLUGINS = Path(__file__).parent / "plugins"

OWN_STEP = {
    "name": "own-step",
    "seed": 0,
    "step": "own_steps:step",
    "data": {"name": "own_steps:pairs", "batch_size": 32},
    "model": {"name": "own_steps:two_towers"},
    "optim": {"name": "adam", "lr": 0.003},
    "stages": {
        "overfit-one": {"steps": 100},
        "overfit-few": {"steps": 200},
        "full-data": {"epochs": 6},
    },
}


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.slow
def test_a_dict_batch_with_two_inputs_climbs_to_full_data(cli, write_config, tmp_path) -> None:
    config = write_config(OWN_STEP)
    result = cli("run", config, "--to", "full-data", "--run-dir", tmp_path / "run", cwd=PLUGINS)
    summary = _summary(tmp_path / "run")
    statuses = {s["name"]: s["status"] for s in summary["stages"]}
    assert result.code == 0, (result.out, statuses)
    assert statuses == dict.fromkeys(
        ["preflight", "overfit-one", "overfit-few", "full-data"], "passed"
    )
    preflight = json.loads((tmp_path / "run" / "preflight" / "verdict.json").read_text())
    skipped = preflight["figures"]["skipped_checks"]
    # no task in the YAML: every task check is listed with its reason
    assert any("label range" in name for name in skipped)
    assert all("no task in the config" in why for name, why in skipped.items() if "label" in name)
    tags = {
        json.loads(line)["tag"]
        for line in (tmp_path / "run" / "full-data" / "scalars.jsonl").open()
    }
    assert {"train/loss", "val/loss", "diag/output_spread", "time/samples_per_s"} <= tags


@pytest.mark.parametrize(
    ("step", "code", "says"),
    [
        ("own_steps:detached_step", "no_gradient", "step own_steps:detached_step"),
        ("own_steps:no_return_step", "step_error", "own_steps:no_return_step returned None"),
    ],
)
def test_a_broken_step_is_stopped_at_preflight(
    cli, write_config, tmp_path, step, code, says
) -> None:
    config = write_config({**OWN_STEP, "step": step})
    result = cli("run", config, "--to", "full-data", "--run-dir", tmp_path / "run", cwd=PLUGINS)
    preflight = _summary(tmp_path / "run")["stages"][0]
    assert preflight["name"] == "preflight"
    assert preflight["diagnoses"][0]["code"] == code
    assert says in preflight["diagnoses"][0]["message"]
    assert result.code == (1 if code == "no_gradient" else 2)


def test_nested_batches_move_count_and_compare_as_a_whole() -> None:
    batch = {"image": torch.zeros(4, 3), "extra": (torch.ones(4), [torch.arange(4)]), "id": "x"}
    moved = to_device(batch, torch.device("meta"))
    assert moved["image"].device.type == "meta" and moved["extra"][1][0].device.type == "meta"
    assert moved["id"] == "x" and isinstance(moved["extra"], tuple)
    assert batch_size(batch) == 4
    paths = [p for p, _ in leaves(batch)]  # a string is no tensor
    assert paths == ["batch['image']", "batch['extra'][0]", "batch['extra'][1][0]"]
    changed = {**batch, "extra": (torch.ones(4), [torch.arange(4) + 1])}
    assert same(batch, batch) and not same(batch, changed)
