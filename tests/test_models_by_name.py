"""Models by library and name (torchvision:NAME, timm:NAME), never downloaded, with their
outputs picked (a dict's "out", a tuple's first element, an object's .logits)."""

from __future__ import annotations

import json
from collections import namedtuple
from pathlib import Path

import pytest
import torch
import yaml
from picture_folders import write_image_folder, write_segmentation_folder
from torch import nn

from dlsteps.errors import ConfigError, ModelError
from dlsteps.models.registry import build_model

LADDER = ("preflight", "overfit-one", "overfit-few", "full-data")


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a model tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.parametrize(
    ("name", "args", "shape"),
    [
        ("torchvision:resnet18", {}, (2, 5)),
        ("torchvision:mobilenet_v2", {"width_mult": 0.25}, (2, 5)),
        ("torchvision:vit_b_16", {"image_size": 32}, (2, 5)),
        ("torchvision:lraspp_mobilenet_v3_large", {}, (2, 5, 32, 32)),
        ("torchvision:deeplabv3_mobilenet_v3_large", {}, (2, 5, 32, 32)),
        ("timm:test_resnet", {}, (2, 5)),
    ],
)
def test_named_models_take_classes_and_channels_from_the_data(name, args, shape) -> None:
    model = build_model(name, args, {"in_channels": 1, "num_classes": 5}).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 32))  # a grey image: the stem reads 1 channel
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == shape


def test_a_segmentation_builder_keeps_torchvisions_own_parameter_names() -> None:
    model = build_model("torchvision:fcn_resnet50", {}, {"num_classes": 3})
    assert "backbone.conv1.weight" in model.state_dict()  # the bare network, no wrapper
    assert not any(k.startswith("aux_classifier") for k in model.state_dict())


def test_batchnorm_false_gives_a_plain_network() -> None:
    model = build_model("torchvision:resnet18", {"batchnorm": False}, {"num_classes": 3})
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    model.train()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)  # one sample trains fine


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("torchvision:resnet81", "Did you mean 'resnet18'"),
        ("torchvision:fasterrcnn_resnet50_fpn", "detection, video"),
        ("timm:resnet18x", "timm has no model 'resnet18x'"),
        ("torchvision:", "names no model"),
    ],
)
def test_unknown_or_unsupported_names_are_config_errors(name: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model(name, {}, {})


def test_timm_refuses_to_download() -> None:
    with pytest.raises(ConfigError, match="never downloads"):
        build_model("timm:test_resnet", {"pretrained": True}, {})


Pair = namedtuple("Pair", ["logits", "aux"])


class _Returns(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.lin = kind, nn.Linear(4, 3)

    def forward(self, x: torch.Tensor):
        y = self.lin(x)
        return {
            "dict": {"out": y, "aux": y * 0},
            "tuple": (y, y * 0),
            "named": Pair(y, y * 0),
            "object": type("HFOutput", (), {"logits": y, "loss": None})(),
            "odd": {"a": y, "b": y},
        }[self.kind]


@pytest.mark.parametrize("kind", ["dict", "tuple", "named", "object"])
def test_outputs_are_picked_automatically(kind: str) -> None:
    model = build_model("m", {}, {}, registry={"m": lambda: _Returns(kind)})
    x = torch.randn(2, 4)
    torch.testing.assert_close(model(x), model.lin(x))


def test_model_output_names_the_part_and_an_unknown_dict_says_what_to_set() -> None:
    odd = build_model("m", {}, {}, registry={"m": lambda: _Returns("odd")})
    with pytest.raises(ModelError, match=r"keys \['a', 'b'\].*set model.output"):
        odd(torch.randn(2, 4))
    picked = build_model("m", {}, {}, registry={"m": lambda: _Returns("odd")}, output="b")
    assert picked(torch.randn(2, 4)).shape == (2, 3)
    second = build_model("m", {}, {}, registry={"m": lambda: _Returns("tuple")}, output=1)
    assert float(second(torch.randn(2, 4)).detach().abs().sum()) == 0.0


def _climb(cli, tmp_path: Path, config: dict) -> dict:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"device": "cpu", **config}))
    result = cli("run", path, "--to", "full-data", "--run-dir", tmp_path / "run", "--json")
    assert result.code == 0, result.err
    stages = {s["name"]: s for s in json.loads(result.out)["stages"]}
    assert {n: s["status"] for n, s in stages.items()} == dict.fromkeys(LADDER, "passed")
    return stages


@pytest.mark.slow
def test_a_torchvision_classifier_climbs_to_full_data(cli, tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", per_class=16, val_per_class=6, size=16)
    stages = _climb(
        cli,
        tmp_path,
        {
            "task": "classification",
            "data": {"name": "image_folder", "args": {"root": str(root)}, "batch_size": 16},
            "model": {"name": "torchvision:resnet18", "args": {"batchnorm": False}},
            "optim": {"lr": 3.0e-4},
            "stages": {"full-data": {"epochs": 6}},
        },
    )
    assert stages["preflight"]["figures"]["output_shape"] == [3]  # num_classes from the folders


@pytest.mark.slow
def test_a_torchvision_segmentation_builder_with_dict_output_climbs_to_full_data(
    cli, tmp_path: Path
) -> None:
    # rectangles on an 8-pixel grid: LR-ASPP's logits come at output stride 8, upsampled
    root = write_segmentation_folder(tmp_path / "data", train=48, val=12, size=64, grid=8)
    stages = _climb(
        cli,
        tmp_path,
        {
            "task": "segmentation",
            "data": {
                "name": "segmentation_folder",
                "args": {"root": str(root), "mask_values": {0: 0, 255: 1}},
                "batch_size": 8,
            },
            "model": {
                "name": "torchvision:lraspp_mobilenet_v3_large",
                "args": {"batchnorm": False},
            },
            "optim": {"lr": 2.0e-3},
            "stages": {
                "overfit-one": {"steps": 300, "gate": {"train_loss_below": 0.05}},
                "overfit-few": {"samples": 4, "steps": 400, "gate": {"train_loss_below": 0.05}},
                # a 3M-parameter net on two shared CPU cores: speed is not what is tested
                "full-data": {"epochs": 6, "gate": {"max_batch_seconds": 30.0}},
            },
        },
    )
    assert stages["preflight"]["figures"]["output_shape"] == [2, 64, 64]


@pytest.mark.slow
def test_a_timm_model_climbs_to_full_data(cli, tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", size=16)
    stages = _climb(
        cli,
        tmp_path,
        {
            "task": "classification",
            "data": {"name": "image_folder", "args": {"root": str(root), "size": 64}},
            "model": {"name": "timm:test_resnet"},
            "optim": {"lr": 1.0e-3},
            "stages": {"full-data": {"epochs": 8}},
        },
    )
    assert stages["preflight"]["figures"]["input_shape"] == [3, 64, 64]


def test_batchnorm_on_a_1x1_feature_map_of_one_sample_says_what_to_do(cli, tmp_path) -> None:
    root = write_image_folder(tmp_path / "data", per_class=4, val_per_class=2, size=16)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "task": "classification", "device": "cpu",
        "data": {"name": "image_folder", "args": {"root": str(root)}},
        "model": {"name": "torchvision:resnet18"},
    }))  # fmt: skip
    result = cli("run", path, "--to", "overfit-one", "--run-dir", tmp_path / "run")
    assert result.code == 2 and "Traceback" not in result.err
    assert "single value per channel" in result.err and "batchnorm: false" in result.err
