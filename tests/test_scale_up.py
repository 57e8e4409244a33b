"""The top of the ladder: the augment/scale-up gates on hand-made curves, the torchvision
model zoo (never a download), and both stages end to end on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlsteps.errors import ModelError
from dlsteps.judge.schemas import CompareGate as GateConfig
from dlsteps.judge.verdict import Verdict
from dlsteps.ladder.stages import judge_stage as judge
from dlsteps.logbook.curves import Curve, Curves
from dlsteps.models import zoo
from dlsteps.models.registry import build_model


def _curves(metric: str, value: float, steps: int = 30) -> Curves:
    s = np.arange(1, steps + 1)
    loss = np.linspace(1.0, 0.3, steps)
    return Curves(
        {
            "train/loss": Curve(s, loss),
            "val/loss": Curve(s, loss + 0.05),
            "grad/norm": Curve(s, np.full(steps, 0.5)),
            f"metrics/{metric}": Curve(np.array([steps]), np.array([value])),
        }
    )


def _passed(name: str, value: float, higher: bool = True) -> Verdict:
    figure = {"name": name, "value": value, "higher_is_better": higher}
    return Verdict("passed", figures={"primary_metric": figure})


def test_augment_passes_when_the_metric_holds_and_reports_the_delta() -> None:
    v = judge("augment", _curves("miou", 0.82), GateConfig(), {"full-data": _passed("miou", 0.8)})
    assert v.status == "passed"
    assert v.figures["compared_with"] == "full-data"
    assert v.figures["delta"] == pytest.approx(0.02)
    assert v.figures["reference_value"] == pytest.approx(0.8)


def test_augment_hurts_when_the_metric_falls_beyond_the_tolerance() -> None:
    history = {"full-data": _passed("miou", 0.8)}
    v = judge("augment", _curves("miou", 0.75), GateConfig(tolerance=0.02), history)
    assert v.status == "failed"
    assert [d.code for d in v.diagnoses] == ["augment_hurts"]
    assert v.figures["delta"] == pytest.approx(-0.05)
    assert "0.75" in v.diagnoses[0].message and "full-data" in v.diagnoses[0].message
    within = judge("augment", _curves("miou", 0.79), GateConfig(tolerance=0.02), history)
    assert within.status == "passed"


def test_scale_up_compares_with_the_best_earlier_stage() -> None:
    history = {
        "overfit-few": _passed("miou", 0.6),
        "full-data": _passed("miou", 0.85),
        "augment": _passed("miou", 0.8),
    }
    v = judge("scale-up", _curves("miou", 0.83), GateConfig(), history)
    assert v.status == "failed"
    assert v.diagnoses[0].code == "scale_up_hurts"
    assert v.figures["compared_with"] == "full-data"
    assert v.figures["delta"] == pytest.approx(-0.02)
    assert judge("scale-up", _curves("miou", 0.86), GateConfig(), history).status == "passed"


def test_scale_up_with_a_lower_is_better_metric() -> None:
    history = {"full-data": _passed("rmse", 0.5, higher=False)}
    worse = judge("scale-up", _curves("rmse", 0.6), GateConfig(tolerance=0.05), history)
    assert worse.status == "failed" and worse.figures["delta"] == pytest.approx(0.1)
    better = judge("scale-up", _curves("rmse", 0.4), GateConfig(), history)
    assert better.status == "passed" and better.figures["delta"] == pytest.approx(-0.1)


def test_a_nan_loss_fails_the_stage_before_any_metric_comparison() -> None:
    curves = _curves("miou", 0.9)
    values = curves["train/loss"].values.copy()
    values[10] = np.nan
    curves["train/loss"] = Curve(curves["train/loss"].steps, values)
    v = judge("augment", curves, GateConfig(), {"full-data": _passed("miou", 0.5)})
    assert [d.code for d in v.diagnoses] == ["nan_loss"]


def test_a_missing_metric_row_is_a_failure_not_a_pass() -> None:
    curves = _curves("miou", 0.9)
    del curves["metrics/miou"]
    v = judge("augment", curves, GateConfig(), {"full-data": _passed("miou", 0.5)})
    assert v.status == "failed" and v.diagnoses[0].code == "augment_hurts"


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("resnet18", (2, 5)),
        ("resnet34", (2, 5)),
        ("resnet50", (2, 5)),
        ("lraspp_mobilenet_v3_large", (2, 5, 32, 32)),
        ("fcn_resnet50", (2, 5, 32, 32)),
        ("deeplabv3_resnet50", (2, 5, 32, 32)),
    ],
)
def test_zoo_models_build_from_random_init_and_fit_the_data(name, shape, monkeypatch) -> None:
    def no_download(*args, **kwargs):
        raise AssertionError("a zoo model tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    model = build_model(name, {}, {"in_channels": 1, "num_classes": 5})
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 32))
    assert tuple(out.shape) == shape


def test_small_input_resnet_keeps_8x8_digits_spatial() -> None:
    model = zoo.resnet18(in_channels=1, num_classes=10, small_input=True).eval()
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert model.conv1.stride == (1, 1)


def test_weights_path_loads_everything_but_a_head_of_another_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = zoo.resnet18(num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save({k: v for k, v in source.state_dict().items()}, path)
    model = zoo.resnet18(num_classes=3, weights_path=str(path))
    torch.testing.assert_close(model.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    assert model.fc.weight.shape == (3, 512)  # the head stays randomly initialised
    # a segmentation model is torchvision's own network (its output dict is picked by a
    # forward hook), so torchvision's file fits as it is, and so does one saved from a
    # wrapper whose keys start with "net." (dlsteps' earlier checkpoints)
    seg = zoo.lraspp_mobilenet_v3_large(num_classes=4)
    torch.save(seg.state_dict(), tmp_path / "lraspp.pth")
    torch.save({f"net.{k}": v for k, v in seg.state_dict().items()}, tmp_path / "wrapped.pth")
    for file in ("lraspp.pth", "wrapped.pth"):
        again = zoo.lraspp_mobilenet_v3_large(num_classes=4, weights_path=str(tmp_path / file))
        for (k, a), b in zip(seg.state_dict().items(), again.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, msg=k)


def test_weights_for_another_architecture_are_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(zoo.resnet18().state_dict(), path)
    with pytest.raises(ModelError, match=r"lacks .* tensors"):
        build_model("resnet50", {"weights_path": str(path)}, {})
    with pytest.raises(ModelError, match="no file at"):
        build_model("resnet18", {"weights_path": str(tmp_path / "missing.pth")}, {})


@pytest.mark.slow
def test_augment_and_scale_up_end_to_end_report_their_deltas(cli, write_config, tmp_path) -> None:
    cfg = write_config(
        stages={
            "full-data": {"epochs": 5},
            "augment": {
                "init_from": "full-data",
                "epochs": 2,
                "augmentations": ["hflip", "vflip", "rot90"],
                "class_weights": "auto",
                "gate": {"tolerance": 0.1},
            },
            "scale-up": {
                "model": {"name": "unet", "args": {"width": 16, "depth": 2}},
                "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 1e-4},
                "epochs": 2,
                # a scaled-up model trained for far too few steps: its metric must drop
                "steps": 2,
            },
        }
    )
    run_dir = tmp_path / "run"
    result = cli("run", cfg, "--from", "full-data", "--run-dir", run_dir, "--keep-going", "-q")
    assert result.code == 1, result.err
    stages = {s["name"]: s for s in json.loads((run_dir / "summary.json").read_text())["stages"]}
    full = stages["full-data"]["figures"]["primary_metric"]["value"]
    aug = stages["augment"]
    assert aug["figures"]["compared_with"] == "full-data"
    assert aug["figures"]["delta"] == pytest.approx(aug["figures"]["metric_value"] - full)
    assert any(n.startswith("class weights (median): [") for n in aug["notes"])
    up = stages["scale-up"]
    assert up["status"] == "failed"
    assert [d["code"] for d in up["diagnoses"] if d["severity"] == "fail"] == ["scale_up_hurts"]
    assert up["figures"]["delta"] < 0
    assert up["figures"]["compared_with"] in ("full-data", "augment")
