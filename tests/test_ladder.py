"""The ladder end to end through the real CLI, on tiny data: what a user sees and gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlsteps.logbook.curves import read_curves

PLUGINS = Path(__file__).parent / "plugins"
ROOT = Path(__file__).resolve().parents[1]


def _rows(stage_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (stage_dir / "scalars.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tiny_ladder_passes_and_writes_the_contract_run_dir(cli, write_config, tmp_path) -> None:
    run_dir = tmp_path / "run"
    result = cli("run", write_config(), "--to", "full-data", "--run-dir", run_dir)
    assert result.code == 0, result.err
    assert "✓ every stage passed: preflight, overfit-one, overfit-few, full-data" in result.err
    assert f"dlsteps stage augment --run-dir {run_dir}" in result.err  # what to try next
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "passed"
    assert [s["name"] for s in summary["stages"]] == [
        "preflight",
        "overfit-one",
        "overfit-few",
        "full-data",
    ]
    for entry in summary["stages"]:
        assert entry["status"] == "passed"
        assert not [d for d in entry["diagnoses"] if d["severity"] == "fail"]
        verdict = json.loads((run_dir / entry["name"] / "verdict.json").read_text())
        assert verdict["status"] == "passed"
    assert (run_dir / "config.yaml").exists()
    for stage in ("overfit-one", "overfit-few", "full-data"):
        stage_dir = run_dir / stage
        assert (stage_dir / "checkpoint.pt").exists()
        rows = _rows(stage_dir)
        assert all(set(r) == {"step", "tag", "value", "time"} for r in rows)
        train_steps = [r["step"] for r in rows if r["tag"] == "train/loss"]
        val_steps = [r["step"] for r in rows if r["tag"] == "val/loss"]
        # exactly one train loss per optimizer step, one val loss per iteration (val_every 1)
        assert train_steps == list(range(1, len(train_steps) + 1))
        assert val_steps == train_steps
        for tag in ("time/data", "time/compute", "grad/norm", "lr"):
            assert [r["step"] for r in rows if r["tag"] == tag] == train_steps
    # full-data: 64 train samples / batch 8 = 8 steps per epoch, 5 epochs
    assert len(read_curves(run_dir / "full-data")["train/loss"]) == 40


@pytest.mark.slow
def test_tensorboard_reads_the_same_values_as_the_jsonl(cli, write_config, tmp_path) -> None:
    run_dir = tmp_path / "run"
    assert cli("stage", "full-data", "-c", write_config(), "--run-dir", run_dir).code == 0
    curves = read_curves(run_dir / "full-data")
    events = EventAccumulator(str(run_dir / "full-data"), size_guidance={"scalars": 0})
    events.Reload()
    for tag in ("train/loss", "val/loss", "time/compute"):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == curves[tag].steps.tolist()
        assert [s.value for s in scalars] == pytest.approx(curves[tag].values.tolist(), rel=1e-6)


@pytest.mark.slow
def test_same_seed_gives_identical_curves(cli, write_config, tmp_path) -> None:
    config = write_config()
    curves = []
    for name in ("a", "b"):
        assert cli("stage", "full-data", "-c", config, "--run-dir", tmp_path / name).code == 0
        curves.append(read_curves(tmp_path / name / "full-data"))
    for tag in ("train/loss", "val/loss", "grad/norm"):
        assert curves[0][tag].values.tolist() == curves[1][tag].values.tolist()


@pytest.mark.slow
def test_model_ignoring_its_input_passes_overfit_one_and_fails_overfit_few(
    cli, write_config, tmp_path
) -> None:
    config = write_config(model={"name": "ladder_plugins:ignores_input", "args": {"size": 16}})
    run_dir = tmp_path / "run"
    result = cli("run", config, "--to", "full-data", "--run-dir", run_dir, "--json", cwd=PLUGINS)
    assert result.code == 1
    summary = json.loads(result.out)
    stages = {s["name"]: s for s in summary["stages"]}
    assert stages["overfit-one"]["status"] == "passed"
    assert stages["overfit-few"]["status"] == "failed"
    assert "full-data" not in stages  # run stops at the first failed gate
    codes = [d["code"] for d in stages["overfit-few"]["diagnoses"]]
    assert codes[0] == "input_ignored"


@pytest.mark.slow
def test_learning_rate_of_ten_is_caught(cli, write_config, tmp_path) -> None:
    config = write_config(optim={"name": "sgd", "lr": 10.0, "momentum": 0.9})
    result = cli(
        "run",
        config,
        "--to",
        "overfit-one",
        "--set",
        "stages.overfit-one.steps=40",
        "--run-dir",
        tmp_path / "run",
        "--json",
    )
    assert result.code == 1
    stage = json.loads(result.out)["stages"][-1]
    assert stage["name"] == "overfit-one" and stage["status"] == "failed"
    assert stage["diagnoses"][0]["code"] in {"nan_loss", "diverging"}
    assert stage["diagnoses"][0]["step"] is not None


@pytest.mark.slow
@pytest.mark.parametrize("config", ["seg.yaml", "digits.yaml"])
def test_shipped_configs_pass_up_to_full_data(cli, tmp_path, config: str) -> None:
    result = cli(
        "run", ROOT / "configs" / config, "--to", "full-data", "--run-dir", tmp_path / "r", "--json"
    )
    assert result.code == 0, result.out + result.err
    summary = json.loads(result.out)
    assert [s["status"] for s in summary["stages"]] == ["passed"] * 4


def test_stages_lists_the_ladder(cli) -> None:
    result = cli("stages")
    assert result.code == 0
    for name in ("preflight", "overfit-one", "overfit-few", "full-data", "augment", "scale-up"):
        assert name in result.out


def test_unknown_stage_name_exits_2(cli) -> None:
    result = cli("stage", "overfit-2")
    assert result.code == 2 and "overfit-2" in result.err


def test_explain_prints_causes_and_first_try(cli) -> None:
    result = cli("explain", "input_ignored")
    assert result.code == 0 and "First thing to try" in result.out
    assert cli("explain", "input_ignord").code == 2


@pytest.mark.slow
def test_stage_added_to_an_existing_run_keeps_the_earlier_record(
    cli, write_config, tmp_path
) -> None:
    run_dir = tmp_path / "run"
    assert cli("run", write_config(), "--to", "overfit-one", "--run-dir", run_dir).code == 0
    result = cli("stage", "overfit-few", "--run-dir", run_dir, "--json")
    assert result.code == 0, result.err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["stages"]] == [
        ("preflight", "passed"),
        ("overfit-one", "passed"),
        ("overfit-few", "passed"),
    ]
    assert (run_dir / "overfit-few" / "verdict.json").exists()
