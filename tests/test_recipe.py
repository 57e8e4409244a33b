"""Issue 15's checks on their own: batch mixing, layers the optimizer cannot see, schedules
that do not fit, updates that did not happen, layer health, where a NaN is born, and a
learning-rate finder whose advice is tried before it is given."""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from dlsteps.config import build_config
from dlsteps.logbook.book import Logbook
from dlsteps.logbook.curves import read_curves
from dlsteps.preflight.checks import check_batch_mixing, check_schedules, check_unregistered
from dlsteps.train.lr_sweep import lr_sweep, rates
from dlsteps.train.steps import SupervisedStep
from dlsteps.train.watch import LayerHealth, UpdateWatch, first_nonfinite_module

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "tests" / "bugzoo"
CPU = torch.device("cpu")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


# --- batch mixing ------------------------------------------------------------------------


class Transposed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x).t().reshape(x.shape[0], 8))  # samples leak into each other


class SeqFirstRNN(nn.Module):
    """Inputs (B, T, F) fed to an RNN that expects (T, B, F): batch_first forgotten."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8)  # batch_first=False
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def test_batch_mixing_is_caught_and_named_and_silent_on_correct_models() -> None:
    x = torch.randn(6, 8)
    assert check_batch_mixing(_mlp(), x, CPU) == []
    # batch norm mixes samples in train mode only: the check runs in eval mode
    with_norm = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    assert check_batch_mixing(with_norm, x, CPU) == []
    (d,) = check_batch_mixing(Transposed(), x, CPU)
    assert d.code == "batch_mixing" and "module 'b'" in d.message
    (d,) = check_batch_mixing(SeqFirstRNN(), torch.randn(6, 5, 4), CPU)
    assert "module 'rnn'" in d.message


def test_layers_in_a_plain_list_and_bare_tensors_are_named() -> None:
    class Hidden(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = [nn.Linear(4, 4)]
            self.scale = torch.ones(4, requires_grad=True)
            self.ok = nn.ModuleList([nn.Linear(4, 4)])

    (d,) = check_unregistered(Hidden())
    assert d.code == "unregistered_parameters"
    assert "plain list 'blocks'" in d.message and "tensor 'scale'" in d.message
    assert "'ok'" not in d.message
    assert check_unregistered(_mlp()) == []


# --- schedules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("optim", "says"),
    [
        ({"scheduler": "cosine", "warmup_steps": 1000}, "warm-up of 1000 steps is longer"),
        ({"scheduler": "step", "step_size": 10, "gamma": 0.1}, "below 1 % of its peak"),
        ({"scheduler": "cosine", "warmup_steps": 10}, None),  # fits the stage
        ({"scheduler": "step", "step_size": 100, "gamma": 0.5}, None),
    ],
)
def test_a_schedule_is_simulated_over_the_stage(optim: dict, says: str | None) -> None:
    loaded = build_config({"optim": optim, "stages": {"full-data": {"steps": 200}}}, "<t>")
    found = check_schedules([loaded.plans["full-data"]], train_size=256)
    if says is None:
        assert found == []
    else:
        (d,) = found
        assert d.code == "schedule_mismatch" and says in d.message and "200" in d.message


# --- updates that did not happen -----------------------------------------------------------


def _one_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    loss = model(torch.randn(4, 8)).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_a_parameter_the_optimizer_does_not_hold_is_named_after_the_first_step() -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(list(model[0].parameters()), lr=0.1)  # the head left out
    watch = UpdateWatch(model, optimizer)
    _one_step(model, optimizer)
    (problem,) = watch.problems
    assert "2.weight (not in the optimizer)" in problem and "2.bias" in problem
    assert watch.done and not optimizer._optimizer_step_pre_hooks  # the hooks are gone

    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    watch = UpdateWatch(model, optimizer)
    _one_step(model, optimizer)
    assert watch.problems == []


def test_a_group_with_lr_0_is_named_but_a_warm_up_from_0_and_tiny_updates_are_not() -> None:
    model = _mlp()
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.0}]
    optimizer = torch.optim.SGD(groups, lr=0.1)
    watch = UpdateWatch(model, optimizer)
    _one_step(model, optimizer)
    (problem,) = watch.problems
    assert "2.weight (its parameter group's LR is 0)" in problem and "0.weight" not in problem

    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(step / 10, 1.0))
    watch = UpdateWatch(model, optimizer)
    _one_step(model, optimizer)  # LR 0 everywhere: nothing can move, not judged
    assert watch.problems == [] and not watch.done
    warmup.step()
    _one_step(model, optimizer)
    assert watch.problems == [] and watch.done

    # a gradient through a saturated gate: held, LR > 0, an update below float resolution
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    watch = UpdateWatch(model, optimizer)
    loss = model(torch.randn(4, 8)).square().mean() * 1e-30
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert watch.problems == [] and watch.done


def test_a_frozen_parameter_that_changes_is_named() -> None:
    model = _mlp()
    model[0].weight.requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    watch = UpdateWatch(model, optimizer)
    model[0].weight.data.add_(1.0)  # "a forward that writes to its weights": before the step
    watch._snapshot(optimizer, (), {})
    model[0].weight.data.add_(1.0)
    watch._compare(optimizer, (), {})
    assert any("frozen" in p and "0.weight" in p for p in watch.problems)


def test_a_step_the_grad_scaler_skips_is_not_judged() -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    watch = UpdateWatch(model, optimizer)
    loss = model(torch.full((4, 8), float("inf"))).sum()
    scaler.scale(loss).backward()
    scaler.step(optimizer)  # inf gradients: the optimizer step is skipped
    scaler.update()
    assert watch.problems == [] and not watch.done  # the next step is the one judged


# --- layer health ------------------------------------------------------------------------


def test_layer_health_logs_dead_units_saturation_and_norms(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 10), nn.Tanh())
    with torch.no_grad():
        model[0].bias[:6] = -100.0  # 6 of 10 units dead for any input near 0
        model[2].weight.mul_(100.0)  # the tanh is driven to its bounds
    model[2].weight.grad = torch.ones_like(model[2].weight)
    with Logbook.files(tmp_path) as book:
        LayerHealth(model, torch.randn(32, 8), book).measure(5)
    c = read_curves(tmp_path)
    assert c["health/dead/1"].last == pytest.approx(0.6)
    assert c["health/saturated/3"].last > 0.5
    assert c["grad/norm/2"].last == pytest.approx(10.0)  # sqrt(100 ones)
    assert c["weights/norm"].last > 0


# --- where a NaN is born -------------------------------------------------------------------


def test_a_nan_at_init_names_its_module_and_not_the_learning_rate(cli, tmp_path) -> None:
    (tmp_path / "sqrt_model.py").write_text(
        "import torch\nfrom torch import nn\n"
        "class Root(nn.Module):\n"
        "    def forward(self, h):\n        return torch.sqrt(h)  # negative inputs: NaN\n"
        "def model():\n"
        "    return nn.Sequential(nn.Linear(16, 8), Root(), nn.Linear(8, 4))\n"
    )
    config = {
        "task": "classification",
        "data": {"name": "zoo_common:blobs", "batch_size": 16},
        "model": {"name": "sqrt_model:model"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ZOO))
        result = cli("check", "c.yaml", "--run-dir", "run", "--json", cwd=tmp_path)
    assert result.code == 1
    (d,) = [d for d in json.loads(result.out)["stages"][0]["diagnoses"] if d["code"] == "nan_loss"]
    assert "module '1'" in d["message"] and "not the learning rate" in d["message"]
    assert "lower the learning rate" not in d["message"]


def test_first_nonfinite_module_names_the_input_or_the_layer() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Identity())
    assert first_nonfinite_module(model, torch.tensor([[float("nan"), 0.0]])) == "input"
    with torch.no_grad():
        model[0].weight.fill_(float("inf"))
    assert first_nonfinite_module(model, torch.ones(1, 2)) == "0"


# --- the learning-rate finder, and advice that was tried -----------------------------------


def test_the_sweep_survives_nan_and_restores_the_weights_bit_for_bit() -> None:
    model = _mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _one_step(model, optimizer)  # an optimizer with state, as a stage would have
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = json.dumps(optimizer.state_dict()["param_groups"])
    x, y = torch.randn(8, 8), torch.randint(0, 3, (8,))

    def batches():
        while True:
            yield x, y

    def make_step() -> SupervisedStep:
        return SupervisedStep(model, optimizer, nn.CrossEntropyLoss(), contextlib.nullcontext())

    curve = lr_sweep(model, optimizer, make_step, batches(), rates(1e-5, 1e4, 60), CPU)
    assert any(not math.isfinite(v) for v in curve.losses) or len(curve.lrs) < 60  # it blew up
    assert curve.suggestion is not None and 1e-5 < curve.suggestion < 1e4
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert json.dumps(optimizer.state_dict()["param_groups"]) == opt_before


@pytest.mark.slow
def test_lr_find_prints_a_suggestion_and_writes_the_curve(cli, tmp_path: Path) -> None:
    result = cli(
        "lr-find", ROOT / "configs/seg.yaml", "--steps", "40", "--run-dir", tmp_path / "lr"
    )
    assert result.code == 0, result.err
    assert re.search(r"suggested lr [0-9.e-]+", result.out), result.out
    sweep = json.loads((tmp_path / "lr/lr-find/lr_sweep.json").read_text())
    assert len(sweep["lrs"]) == len(sweep["losses"]) > 5 and sweep["suggestion"] > 0
    assert "lr_find/loss" in read_curves(tmp_path / "lr/lr-find")  # TensorBoard's too
    assert "<svg" in (tmp_path / "lr/report.html").read_text()


@pytest.mark.slow
def test_the_advice_is_tried_a_too_small_lr_gets_a_rate_that_then_passes(cli, tmp_path) -> None:
    first = cli("run", "tiny_lr.yaml", "--run-dir", tmp_path / "a", "-q", cwd=ZOO)
    assert first.code == 1
    summary = json.loads((tmp_path / "a/summary.json").read_text())
    (entry,) = [s for s in summary["stages"] if s["name"] == "overfit-one"]
    headline = entry["diagnoses"][0]
    assert headline["code"] == "loss_not_decreasing"  # the headline stays the symptom
    rate = re.search(r"set optim.lr: ([0-9.e-]+)", headline["message"]).group(1)
    again = cli(
        "run", "tiny_lr.yaml", "--to", "overfit-one", "--set", f"optim.lr={rate}",
        "--run-dir", tmp_path / "b", "-q", cwd=ZOO,
    )  # fmt: skip
    assert again.code == 0, f"the advised lr {rate} did not pass"
    # dlsteps report re-judges the stage, its tried advice included, identically
    report = cli("report", tmp_path / "a")
    assert report.code == 0
    assert "re-judged" not in report.out
    rejudged = json.loads((tmp_path / "a/summary.json").read_text())
    assert rejudged["stages"] == summary["stages"]
