"""Config: overlays, --set, and every user mistake answered with exit 2 naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dlsteps.config import build_config, load_config
from dlsteps.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    loaded = load_config(path)
    assert loaded.name == (loaded.base.name or path.stem)
    assert "overfit-one" in loaded.plans


def test_stage_overlay_overrides_top_level_keys_only_for_that_stage() -> None:
    loaded = build_config(
        {
            "optim": {"lr": 0.01, "weight_decay": 0.1},
            "stages": {"full-data": {"optim": {"lr": 0.001}, "epochs": 2}},
        },
        "x.yaml",
    )
    assert loaded.plan("full-data").config.optim.lr == 0.001
    assert loaded.plan("full-data").config.optim.weight_decay == 0.1  # deep merge keeps siblings
    assert loaded.plan("full-data").knobs.epochs == 2
    assert loaded.plan("overfit-one").config.optim.lr == 0.01


def test_aliases_and_defaults_of_the_design() -> None:
    loaded = build_config(
        {"stages": {"overfit-1": {"steps": 7}, "overfit-10": {"samples": 5}}}, "x"
    )
    assert loaded.plan("overfit-one").knobs.steps == 7
    assert loaded.plan("overfit-few").knobs.samples == 5
    assert loaded.plan("overfit-few").knobs.steps == 500
    assert loaded.plan("overfit-one").knobs.gate.train_loss_below == 0.01
    assert loaded.plan("full-data").knobs.gate.min_val_improvement == 0.02


def test_set_values_are_yaml_typed_and_dotted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 0.1}\n")
    loaded = load_config(
        path, ["optim.lr=3e-4", "stages.overfit-one.steps=200", "data.args={size: 16}"]
    )
    assert loaded.base.optim.lr == pytest.approx(3e-4)
    assert loaded.plan("overfit-one").knobs.steps == 200
    assert loaded.base.data.args == {"size": 16}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"optim": {"lrr": 1}}, ["optim.lrr", "Did you mean 'lr'"]),
        ({"modle": {}}, ["modle", "Did you mean 'model'"]),
        ({"data": {"batch_size": 0}}, ["data.batch_size", "greater than 0"]),
        ({"optim": {"lr": -1}}, ["optim.lr"]),
        ({"task": "detection"}, ["task"]),
        ({"device": "gpu"}, ["device"]),
        ({"stages": {"full-dat": {}}}, ["full-dat", "Did you mean 'full-data'"]),
        ({"stages": {"full-data": {"stepz": 3}}}, ["stages.full-data.stepz", "'steps'"]),
        ({"stages": {"full-data": {"optim": {"lr": "fast"}}}}, ["stages.full-data.optim.lr"]),
        ({"stages": {"overfit-one": {"gate": {"windw": 3}}}}, ["gate.windw", "'window'"]),
        ({"stages": {"augment": {"init_from": "ful-data"}}}, ["init_from", "full-data"]),
        ({"stages": {"overfit-one": 5}}, ["stages.overfit-one", "dictionary"]),
    ],
)
def test_mistakes_name_the_key(raw: dict, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(raw, "bad.yaml")
    message = str(info.value)
    assert "bad.yaml" in message
    for part in expected:
        assert part in message


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  name: shapes\n  args: {size: 16\nmodel: {}\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+:\d+: YAML syntax error"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


@pytest.mark.parametrize("assignment", ["optim.lr", "=3", "optim.lr.x=3"])
def test_bad_set(assignment: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match="--set"):
        load_config(path, [assignment])


def test_cli_exits_2_naming_the_key(cli, write_config) -> None:
    path = write_config(optim={"name": "adam", "lrr": 0.1})
    result = cli("run", path)
    assert result.code == 2
    assert "optim.lrr" in result.err and "Did you mean 'lr'" in result.err
    assert "Traceback" not in result.err


def test_cli_unknown_builtin_and_missing_module(cli, write_config) -> None:
    result = cli("check", write_config(model={"name": "tiny_unett"}))
    assert result.code == 2 and "model.name" in result.err and "tiny_unet" in result.err
    result = cli("check", write_config(data={"name": "no_such_module_xyz:make"}))
    assert result.code == 2 and "no_such_module_xyz" in result.err


def test_cli_missing_config_file(cli, tmp_path: Path) -> None:
    result = cli("run", tmp_path / "nope.yaml")
    assert result.code == 2 and "not found" in result.err


def test_top_stages_train_as_long_as_full_data_unless_told() -> None:
    loaded = build_config({"stages": {"full-data": {"epochs": 7}, "scale-up": {"steps": 5}}}, "x")
    augment = loaded.plan("augment").knobs
    assert (augment.epochs, augment.steps, augment.init_from) == (7, None, "full-data")
    assert augment.augmentations == "auto" and augment.gate.tolerance == 0.02
    scale_up = loaded.plan("scale-up").knobs
    assert (scale_up.epochs, scale_up.steps) == (None, 5)
    assert loaded.configured("scale-up") and not loaded.configured("augment")


def test_unconfigured_scale_up_is_skipped_with_advice(cli, write_config, tmp_path: Path) -> None:
    result = cli("stage", "scale-up", "-c", write_config(), "--run-dir", tmp_path / "r", "--json")
    assert result.code == 0
    (entry,) = json.loads(result.out)["stages"]
    assert entry["status"] == "skipped" and "stages.scale-up" in entry["notes"][0]
