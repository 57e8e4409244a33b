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
    # the inputs named: full-data's baseline is the model trained on them zeroed
    config = write_config({**OWN_STEP, "data": {**OWN_STEP["data"], "inputs": ["left", "right"]}})
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
    full = {s["name"]: s for s in summary["stages"]}["full-data"]["figures"]
    # two balanced classes: a predictor that sees no input is at ~ln 2
    assert 0.6 < full["baseline_val_loss"] < 0.75 and full["best_val_loss"] < 0.6
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


class _Broken(torch.utils.data.Dataset):
    """Dict items of ``own_steps.pairs`` with one thing broken (``how``)."""

    num_classes = 2

    def __init__(self, base: torch.utils.data.Dataset, how: str) -> None:
        self.base, self.how = base, how

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        if self.how == "nan" and i == 3:
            item["right"] = item["right"].clone()
            item["right"][0] = float("nan")
        if self.how == "random_label":
            item["label"] = torch.randint(0, 2, ())
        if self.how == "label_plus_one":
            item["label"] = item["label"] + 1
        return item


@pytest.mark.parametrize(
    ("how", "code", "says"),
    [
        ("nan", "nan_loss", "indices [3]"),
        ("random_label", "nondeterministic_labels", "different target ('label')"),
        ("val_is_train", "split_overlap", "byte-identical"),
    ],
)
def test_preflight_walks_dict_items(how: str, code: str, says: str, monkeypatch) -> None:
    """NaN in one part of a dict item, a target that changes between reads, and val items
    equal to train items are found in nested batches as in (input, target) pairs."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    from own_steps import pairs, two_towers

    from dlsteps.config.load import build_config
    from dlsteps.data.stats import ItemParts, data_stats
    from dlsteps.preflight.step_checks import run_step_preflight
    from dlsteps.tasks import make_task
    from dlsteps.train.user_step import resolve_step

    config = build_config({**OWN_STEP, "data": {"target": "label"}}, "test").base
    train, val = pairs(0, 128, 32)
    if how == "val_is_train":
        val = torch.utils.data.Subset(train, list(range(32)))
    else:
        train = _Broken(train, how)
    parts = ItemParts(pairs=False, target="label")
    stats = data_stats(train, val, labels=True, parts=parts)
    model = two_towers()
    verdict = run_step_preflight(
        model, resolve_step("own_steps:step"), train, val, stats, config, torch.device("cpu"),
        make_task(config),
    )  # fmt: skip
    found = [d for d in verdict.diagnoses if d.code == code and d.severity == "fail"]
    assert found and says in found[0].message, verdict.diagnoses
    assert verdict.status == "failed"


def test_a_declared_task_with_named_parts_runs_the_task_checks(monkeypatch) -> None:
    """task + data.inputs/data.target: the label range and the loss at init (ln 2 for two
    classes) are checked on the step's outputs; labels 1..2 for 2 outputs are caught."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    from own_steps import pairs, two_towers

    from dlsteps.config.load import build_config
    from dlsteps.data.stats import ItemParts, data_stats
    from dlsteps.preflight.step_checks import TASK_CHECKS, run_step_preflight
    from dlsteps.tasks import make_task
    from dlsteps.train.user_step import resolve_step

    data = {"inputs": ["left", "right"], "target": "label"}
    config = build_config({**OWN_STEP, "task": "classification", "data": data}, "test").base
    parts = ItemParts(pairs=False, inputs=("left", "right"), target="label")
    step = resolve_step("own_steps:step")
    for how, failed in (("none", False), ("label_plus_one", True)):
        train, val = pairs(0, 128, 32)
        train, val = _Broken(train, how), _Broken(val, how)
        stats = data_stats(train, val, labels=True, parts=parts)
        verdict = run_step_preflight(
            two_towers(), step, train, val, stats, config, torch.device("cpu"), make_task(config)
        )
        codes = [d.code for d in verdict.diagnoses if d.severity == "fail"]
        assert set(codes) == ({"label_out_of_range"} if failed else set()), verdict.diagnoses
        if not failed:  # (labels out of range stop preflight before the step would raise)
            assert not set(TASK_CHECKS) & set(verdict.figures["skipped_checks"])
            assert abs(verdict.figures["expected_init_loss"] - 0.6931) < 1e-3


def test_climb_takes_a_step_function(tmp_path, monkeypatch) -> None:
    """dlsteps.climb(step=fn): the same own step from Python, with the objects themselves."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    from own_steps import pairs, step, two_towers

    import dlsteps

    calls = []

    def counted(model, batch):
        calls.append(1)
        return step(model, batch)

    train, val = pairs(0, 256, 64)
    summary = dlsteps.climb(
        two_towers(), train, val, task="classification", step=counted, to_stage="overfit-one",
        run_dir=tmp_path / "run", quiet=True, device="cpu", optim={"lr": 0.003},
        stages={"overfit-one": {"steps": 100}},
    )  # fmt: skip
    assert [(s.name, s.status) for s in summary.stages] == [
        ("preflight", "passed"), ("overfit-one", "passed")
    ]  # fmt: skip
    assert calls
