"""A LightningModule and LightningDataModule as they are, climbing dlsteps' ladder:
setup("fit"), training_step, validation_step, configure_optimizers (with a scheduler
dict), self.log into the logbook; a training_step without a return is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("lightning")

PLUGINS = Path(__file__).parent / "plugins"

LIT = {
    "name": "lit",
    "data": {"name": "lightning:lit_blobs:BlobsDataModule", "batch_size": 32},
    "model": {"name": "lightning:lit_blobs:LitClassifier", "args": {"hidden": 32}},
    "stages": {
        "overfit-one": {"steps": 150},
        "overfit-few": {"steps": 300},
        "full-data": {"epochs": 6},
    },
}


@pytest.mark.slow
def test_a_lightning_module_climbs_to_full_data_with_its_logs(cli, write_config, tmp_path) -> None:
    config = write_config(LIT)
    result = cli("run", config, "--to", "full-data", "--run-dir", tmp_path / "run", cwd=PLUGINS)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    statuses = {s["name"]: s["status"] for s in summary["stages"]}
    assert result.code == 0, summary["stages"]
    assert set(statuses.values()) == {"passed"} and len(statuses) == 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "full-data" / "scalars.jsonl").open()]
    tags = {r["tag"] for r in rows}
    assert {"lightning/train_loss", "lightning/train_acc", "lightning/val_loss"} <= tags
    # the val loss dlsteps judges is the one validation_step logged
    val = [r["value"] for r in rows if r["tag"] == "val/loss"]
    logged = [r["value"] for r in rows if r["tag"] == "lightning/val_loss"]
    assert val == pytest.approx(logged)
    # interval "epoch": StepLR stepped every 8 steps (256 / 32), decaying every 2 epochs
    lrs = [r["value"] for r in rows if r["tag"] == "lr"]
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-2 * 0.9**2)
    notes = json.loads((tmp_path / "run" / "full-data" / "verdict.json").read_text())["notes"]
    assert any("LitClassifier.training_step" in n for n in notes)


def test_a_training_step_that_returns_nothing_is_a_clear_error(cli, write_config, tmp_path) -> None:
    config = write_config({**LIT, "model": {"name": "lightning:lit_blobs:ForgetfulClassifier"}})
    result = cli("run", config, "--to", "full-data", "--run-dir", tmp_path / "run", cwd=PLUGINS)
    assert result.code == 2
    preflight = json.loads((tmp_path / "run" / "summary.json").read_text())["stages"][0]
    assert preflight["status"] == "error"
    assert preflight["diagnoses"][0]["code"] == "step_error"
    assert "ForgetfulClassifier.training_step returned None" in preflight["diagnoses"][0]["message"]
    assert "Traceback" not in result.err + result.out
