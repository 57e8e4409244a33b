"""optim.name and optim.scheduler by dotted class name, beside the short names; schedules
step every optimizer step and stay off in the overfit stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from dlsteps.config.schema import OptimConfig
from dlsteps.errors import ConfigError
from dlsteps.train.optim import check_optim, make_optimizer, make_scheduler

MODEL = torch.nn.Linear(3, 2)


def test_any_torch_optimizer_by_dotted_name_with_its_args() -> None:
    cfg = OptimConfig(
        name="torch.optim.RAdam", lr=0.01, weight_decay=0.1, args={"betas": [0.8, 0.9]}
    )
    opt = make_optimizer(MODEL, cfg, plain=False)
    assert isinstance(opt, torch.optim.RAdam)
    group = opt.param_groups[0]
    assert (
        group["lr"] == 0.01 and group["weight_decay"] == 0.1 and tuple(group["betas"]) == (0.8, 0.9)
    )
    plain = make_optimizer(MODEL, cfg, plain=True).param_groups[0]
    assert plain["weight_decay"] == 0.0  # the overfit stages switch it off
    short = make_optimizer(MODEL, OptimConfig(name="sgd", lr=0.1), plain=False)
    assert isinstance(short, torch.optim.SGD) and short.param_groups[0]["momentum"] == 0.9


def test_a_dotted_scheduler_gets_the_stage_length_and_steps_per_optimizer_step() -> None:
    cfg = OptimConfig(lr=0.1, scheduler={"name": "torch.optim.lr_scheduler.OneCycleLR"})
    opt = make_optimizer(MODEL, cfg, plain=False)
    sched = make_scheduler(opt, cfg, total_steps=40, plain=False)
    assert isinstance(sched, torch.optim.lr_scheduler.OneCycleLR) and sched.total_steps == 40
    assert make_scheduler(opt, cfg, total_steps=40, plain=True) is None
    step = OptimConfig(
        scheduler={
            "name": "torch.optim.lr_scheduler.StepLR",
            "args": {"step_size": 2, "gamma": 0.5},
        }
    )
    opt = make_optimizer(MODEL, step, plain=False)
    sched = make_scheduler(opt, step, total_steps=10, plain=False)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4])
    assert OptimConfig(scheduler="cosine").scheduler.name == "cosine"  # today's keys still work


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (
            {"name": "torch.optim.RAdamm"},
            r"optim\.name: 'torch\.optim\.RAdamm'.*Did you mean 'RAdam'",
        ),
        ({"name": "torch.nn.Linear"}, r"not a torch\.optim\.optimizer\.Optimizer class"),
        ({"scheduler": "torch.optim.lr_scheduler.ReduceLROnPlateau"}, "steps on a metric"),
        ({"name": "nosuchpackage.Opt"}, "cannot import module 'nosuchpackage'"),
    ],
)
def test_bad_dotted_names_are_config_errors(cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_optim(OptimConfig(**cfg))


def test_a_misspelt_optimizer_exits_2_before_anything_runs(cli, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"optim": {"name": "adamm"}}))
    result = cli("check", path, "--run-dir", tmp_path / "run")
    assert result.code == 2 and "optim.name" in result.err and "'adam'" in result.err
    path.write_text(
        yaml.safe_dump({"stages": {"full-data": {"optim": {"name": "torch.optim.Adamm"}}}})
    )
    result = cli("check", path, "--run-dir", tmp_path / "run2")
    assert result.code == 2 and "torch.optim.Adamm" in result.err
    assert not (tmp_path / "run2" / "preflight").exists()


def test_the_logged_lr_follows_the_schedule_in_full_data_and_not_in_overfit_one(
    cli, write_config, tmp_path: Path
) -> None:
    sched = {"name": "torch.optim.lr_scheduler.StepLR", "args": {"step_size": 3, "gamma": 0.5}}
    cfg = write_config(
        optim={"name": "torch.optim.AdamW", "lr": 0.004, "scheduler": sched},
        stages={"overfit-one": {"steps": 6, "early_stop": False}, "full-data": {"steps": 6}},
    )
    for stage in ("overfit-one", "full-data"):
        result = cli("stage", stage, "-c", cfg, "--run-dir", tmp_path / stage, "-q")
        assert result.code in (0, 1), result.err

    def lrs(stage: str) -> list[float]:
        rows = [json.loads(line) for line in (tmp_path / stage / stage / "scalars.jsonl").open()]
        return [r["value"] for r in rows if r["tag"] == "lr"]

    assert lrs("overfit-one") == pytest.approx([0.004] * 6)
    assert lrs("full-data") == pytest.approx([0.004] * 3 + [0.002] * 3)
