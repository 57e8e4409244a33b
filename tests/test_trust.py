"""Issue 13's six observations, each reproduced through the CLI and now given the right
verdict, code and advice: no green light for a broken pipeline, no red light for a
correct one, and every failure inside a stage told as a diagnosis, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "tests" / "bugzoo"


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _stage(summary: dict, name: str) -> dict:
    return {s["name"]: s for s in summary["stages"]}[name]


def _codes(entry: dict, severity: str | None = None) -> list[str]:
    return [d["code"] for d in entry["diagnoses"] if severity in (None, d["severity"])]


def _zoo(cli, case: str, run_dir: Path, *args: str):
    return cli("run", f"{case}.yaml", "--run-dir", run_dir, "--quiet", *args, cwd=ZOO)


# 1. binary masks saved as 0/255 passed every stage with mIoU 1.0 -------------------------


@pytest.mark.slow
def test_masks_saved_as_0_255_stop_at_preflight_naming_the_fix(cli, tmp_path: Path) -> None:
    result = _zoo(cli, "binary_mask_255", tmp_path / "run")
    assert result.code == 2, result.err  # bad data: exit 2, before anything trains
    summary = _summary(tmp_path / "run")
    assert [s["name"] for s in summary["stages"]] == ["preflight"]
    (d,) = [d for d in _stage(summary, "preflight")["diagnoses"] if d["severity"] == "fail"]
    assert d["code"] == "labels_ignored"
    assert "binary mask saved as 0/255" in d["message"]
    assert "mask_values {0: 0, 255: 1}" in d["message"] and "data.ignore_index" in d["message"]


# 2. a correct built-in model failed preflight for some seeds (a "sigmoid") ----------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_tiny_unet_with_two_classes_passes_preflight_on_every_seed(
    cli, tmp_path: Path, seed: int
) -> None:
    result = cli(
        "check",
        ROOT / "configs/seg.yaml",
        "--set",
        "data.args.num_classes=2",
        "--set",
        f"seed={seed}",
        "--run-dir",
        tmp_path / "run",
        "--json",
    )
    assert result.code == 0, result.err
    assert _codes(_stage(json.loads(result.out), "preflight")) == []


# 3. loss_plateau while the loss was still falling -----------------------------------------


@pytest.mark.slow
def test_a_stage_too_short_says_raise_the_steps_not_plateau(cli, tmp_path: Path) -> None:
    result = _zoo(cli, "short_stage", tmp_path / "run")
    assert result.code == 1
    entry = _stage(_summary(tmp_path / "run"), "overfit-few")
    assert entry["status"] == "failed" and _codes(entry, "fail") == ["still_improving"]
    message = entry["diagnoses"][0]["message"]
    assert "still falling" in message and "Raise its steps to about" in message
    suggested = int(message.split("Raise its steps to about ")[1].split(",")[0])
    rerun = _zoo(
        cli, "short_stage", tmp_path / "again", "--set", f"stages.overfit-few.steps={suggested}"
    )
    assert rerun.code == 0, "the advice was tried: the suggested steps pass the gate"


# 4. the model's number of outputs was never checked against the labels --------------------


def test_more_outputs_than_classes_is_a_warning_with_the_numbers(cli, tmp_path: Path) -> None:
    config = {
        "task": "classification",
        "data": {"name": "zoo_common:blobs", "args": {"num_classes": 3}, "batch_size": 32},
        "model": {"name": "zoo_common:mlp", "args": {"num_classes": 10}},
    }
    path = tmp_path / "ten.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("check", path, "--run-dir", tmp_path / "run", "--json", cwd=ZOO)
    assert result.code == 0, result.err
    entry = _stage(json.loads(result.out), "preflight")
    (d,) = [d for d in entry["diagnoses"] if d["code"] == "extra_outputs"]
    assert d["severity"] == "warn"
    assert "10 outputs" in d["message"] and "3 classes" in d["message"]
    assert "class_missing" not in _codes(entry)  # one finding, not two for the same fact


@pytest.mark.slow
def test_an_imagenet_head_on_four_classes_is_named(cli, tmp_path: Path) -> None:
    result = _zoo(cli, "imagenet_head", tmp_path / "run", "--to", "preflight")
    assert result.code == 0
    (d,) = [
        d
        for d in _stage(_summary(tmp_path / "run"), "preflight")["diagnoses"]
        if d["code"] == "extra_outputs"
    ]
    assert "1000 outputs" in d["message"] and "4 classes" in d["message"]
    assert "ln 1000, not ln 4" in d["message"]


# 5. full-data passed barely above chance with no word ------------------------------------


@pytest.mark.slow
def test_a_pass_barely_above_chance_is_said(cli, tmp_path: Path) -> None:
    result = _zoo(cli, "faint_signal", tmp_path / "run", "--from", "full-data", "--to", "full-data")
    assert result.code == 0
    entry = _stage(_summary(tmp_path / "run"), "full-data")
    assert entry["status"] == "passed"  # the gate stays as it is
    (d,) = [d for d in entry["diagnoses"] if d["code"] == "near_chance"]
    assert d["severity"] == "warn" and "standard errors" in d["message"]


# 6. errors inside a stage came out three different ways ----------------------------------


def test_items_that_cannot_be_batched_name_their_indices_and_shapes(cli, tmp_path) -> None:
    result = cli("check", "ragged_items.yaml", "--run-dir", tmp_path / "run", cwd=ZOO)
    assert result.code == 2 and "Traceback" not in result.err
    entry = _stage(_summary(tmp_path / "run"), "preflight")
    assert entry["status"] == "failed"
    (d,) = entry["diagnoses"]
    assert d["code"] == "shape_mismatch"
    assert "(3, 20, 20) at items 13, 63" in d["message"]  # dataset indices, not positions


def test_an_output_batch_that_differs_from_the_target_batch_is_a_diagnosis(cli, tmp_path):
    result = cli("check", "folded_batch.yaml", "--run-dir", tmp_path / "run", cwd=ZOO)
    assert result.code == 2 and "Traceback" not in result.err
    summary = _summary(tmp_path / "run")
    assert summary["status"] == "failed"  # never left "running"
    (d,) = _stage(summary, "preflight")["diagnoses"]
    assert d["code"] == "shape_mismatch"
    assert "(8, 4) for a batch of 16" in d["message"] and "view" in d["message"]


def test_a_squeeze_that_drops_the_batch_of_one_is_found_before_overfit_one(cli, tmp_path):
    result = cli("check", "squeeze_batch.yaml", "--run-dir", tmp_path / "run", cwd=ZOO)
    assert result.code == 2
    (d,) = _stage(_summary(tmp_path / "run"), "preflight")["diagnoses"]
    assert d["code"] == "shape_mismatch" and "a batch of 1 (4,) instead of (1, 4)" in d["message"]


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_a_bad_device_option_exits_2_like_a_bad_device_key(cli, tmp_path, device) -> None:
    result = cli("check", ROOT / "configs/seg.yaml", "--device", device, "--run-dir", tmp_path)
    assert result.code == 2
    assert "Traceback" not in result.err and "--device" in result.err and device in result.err
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.slow
def test_a_model_raising_mid_stage_is_a_stage_error_naming_step_and_module(cli, tmp_path):
    result = _zoo(cli, "raises_mid_training", tmp_path / "run")
    assert result.code == 2 and "Traceback" not in result.err
    summary = _summary(tmp_path / "run")
    assert summary["status"] == "error"
    entry = _stage(summary, "overfit-one")
    assert entry["status"] == "error"
    (d,) = entry["diagnoses"]
    assert d["code"] == "model_error" and d["step"] > 1
    assert f"step {d['step']} (train step" in d["message"]
    assert "in module 'Brittle'" in d["message"] and "raises_mid_training.py:" in d["message"]
    # what was logged before the failure is kept
    rows = (tmp_path / "run/overfit-one/scalars.jsonl").read_text().splitlines()
    assert len(rows) > 0


def test_a_data_item_failing_mid_stage_records_the_data_error_code(cli, tmp_path) -> None:
    plugin = tmp_path / "vanishing.py"
    plugin.write_text(
        "import torch\n"
        "from torch.utils.data import Dataset\n"
        "class Vanishing(Dataset):\n"
        "    reads = 0\n"
        "    def __len__(self):\n        return 64\n"
        "    def __getitem__(self, i):\n"
        "        Vanishing.reads += 1\n"
        "        if Vanishing.reads > 200 and i == 5:\n"
        "            raise OSError('img_5.png vanished')\n"
        "        return torch.randn(16), i % 4\n"
        "def data():\n    return Vanishing(), Vanishing()\n"
    )
    config = {
        "task": "classification",
        "data": {"name": "vanishing:data", "batch_size": 8},
        "model": {"name": "zoo_common:mlp"},
        "stages": {"full-data": {"epochs": 20}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ZOO))
        result = cli("stage", "full-data", "-c", "c.yaml", "--run-dir", "run", cwd=tmp_path)
    assert result.code == 2 and "train item 5" in result.err
    entry = _stage(_summary(tmp_path / "run"), "full-data")
    assert entry["status"] == "error" and _codes(entry) == ["data_error"]


def test_a_bug_in_dlsteps_itself_still_leaves_no_stage_running(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the user's: the traceback stays, but the record says error, not running."""
    from dlsteps.ladder import training

    def broken(*args, **kwargs):
        raise KeyError("a dlsteps bug")

    monkeypatch.setattr(training, "make_optimizer", broken)
    with pytest.raises(KeyError, match="a dlsteps bug"):
        cli("stage", "overfit-one", "--run-dir", tmp_path / "run")
    summary = _summary(tmp_path / "run")
    assert summary["status"] == "error"
    (d,) = _stage(summary, "overfit-one")["diagnoses"]
    assert d["code"] == "internal_error" and "KeyError" in d["message"]
