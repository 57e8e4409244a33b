"""Malformed configs and command lines through the real CLI: exit 2, one message that names
the file, line or key (with a suggestion when one is close), no traceback, and no run
directory left half-made.

Values are drawn by hypothesis: every wrong type or out-of-range value of a key must be
caught by the schema and named, not only the few a person thought of.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BASE: dict[str, Any] = {
    "name": "bad",
    "task": "segmentation",
    "device": "cpu",
    "data": {"name": "shapes", "args": {"num_train": 16, "num_val": 8, "size": 16}},
    "model": {"name": "tiny_unet", "args": {"width": 4}},
    "stages": {"full-data": {"steps": 3}},
}


def _one_message(result: Any, *parts: str) -> None:
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    # one line "error: ..." (ours) or "Error: ..." (click's usage errors) says it all
    (line,) = re.findall(r"^(?:error|Error): .*$", result.err, re.MULTILINE)
    for part in parts:
        assert part in line, result.err


def _with(path: str, value: Any) -> dict[str, Any]:
    """BASE with the dotted key ``path`` set to ``value``."""
    config = json.loads(json.dumps(BASE))
    node = config
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return config


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=12)
not_a_number = st.one_of(
    words.filter(lambda s: not _numeric(s) and s not in ("true", "false", "yes", "no")),
    st.lists(st.integers(), min_size=1, max_size=3),
    st.dictionaries(words, st.integers(), min_size=1, max_size=2),
)
finite = {"allow_nan": False, "allow_infinity": False}
not_positive_float = st.floats(max_value=0.0, **finite)
negative_float = st.floats(max_value=-1e-9, **finite)
not_positive_int = st.integers(max_value=0)
fraction = st.floats(min_value=0.01, max_value=1e6, **finite).filter(lambda f: f != math.floor(f))

# (dotted key, values that must be refused): types and ranges of the schema
RULES: list[tuple[str, st.SearchStrategy]] = [
    ("optim.lr", st.one_of(not_positive_float, not_a_number)),
    ("optim.weight_decay", st.one_of(negative_float, not_a_number)),
    ("optim.momentum", negative_float),
    ("optim.name", words.filter(lambda s: s not in ("adam", "adamw", "sgd"))),
    ("optim.scheduler", words.filter(lambda s: s not in ("none", "cosine", "step"))),
    ("data.batch_size", st.one_of(not_positive_int, fraction, not_a_number)),
    ("data.num_workers", st.one_of(st.integers(max_value=-1), not_a_number)),
    ("log.flush_every", st.one_of(not_positive_int, not_a_number)),
    ("log.checkpoint_every", st.integers(max_value=-1)),
    ("log.checkpoint_minutes", negative_float),
    ("seed", st.one_of(fraction, not_a_number)),
    ("task", words.filter(lambda s: s not in ("classification", "segmentation", "regression"))),
    ("device", words.filter(lambda s: s not in ("auto", "cpu", "cuda", "mps"))),
    ("stages.full-data.steps", st.one_of(not_positive_int, not_a_number)),
    ("stages.overfit-one.samples", not_positive_int),
    ("stages.full-data.val_every", not_positive_int),
    ("stages.full-data.gate.min_val_improvement", st.one_of(negative_float, st.floats(1.0, 1e9))),
    ("stages.full-data.gate.max_batch_seconds", not_positive_float),
    ("stages.overfit-few.gate.window", not_positive_int),
    ("stages.full-data.optim.lr", not_positive_float),
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rule=st.sampled_from(RULES).flatmap(lambda r: st.tuples(st.just(r[0]), r[1])))
def test_wrong_type_or_range_exits_2_naming_the_key(cli, tmp_path: Path, rule) -> None:
    key, value = rule
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(key, value)))
    run_dir = tmp_path / "never"
    result = cli("run", path, "--run-dir", run_dir)
    _one_message(result, "bad.yaml", key)
    assert not run_dir.exists(), "a bad config must not leave a run directory behind"


YAML_ERRORS = {
    "unclosed flow mapping": "data:\n  name: shapes\n  args: {size: 16\nmodel: {}\n",
    "tab indentation": "data:\n\tname: shapes\n",
    "inconsistent indentation": "data:\n  name: shapes\n   batch_size: 8\n",
    "mapping value in a scalar": "optim: lr: 0.1\n",
    "unterminated quote": 'name: "bad\nseed: 0\n',
}


@pytest.mark.parametrize("text", YAML_ERRORS.values(), ids=YAML_ERRORS.keys())
def test_yaml_syntax_error_names_line_and_column(cli, tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = cli("run", path)
    _one_message(result, "YAML syntax error")
    assert any(f"broken.yaml:{n}:" in result.err for n in range(1, 5)), result.err


UNKNOWN = [
    (_with("optimm", {}), ["'optimm'", "Did you mean 'optim'"]),
    (_with("data.batch", 8), ["'data.batch'", "Did you mean 'batch_size'"]),
    (_with("log.checkpoint_evry", 5), ["'log.checkpoint_evry'", "'checkpoint_every'"]),
    (
        _with("stages.full-data.gate.max_batch_second", 1),
        ["max_batch_second", "'max_batch_seconds'"],
    ),
    (_with("stages.full-data.epoch", 1), ["stages.full-data.epoch", "'epochs'"]),
    (_with("stages.overfit-2", {}), ["overfit-2", "Did you mean"]),
    (_with("stages.scale-upp", {}), ["scale-upp", "Did you mean 'scale-up'"]),
    (_with("data.name", "shape"), ["data.name", "'shape'", "Did you mean 'shapes'"]),
    (_with("model.name", "tiny_unte"), ["model.name", "Did you mean 'tiny_unet'"]),
    (_with("data", "shapes"), ["data"]),
    (_with("stages", [1, 2]), ["stages"]),
    (_with("data.args", {"bogus": 1}), ["data.args", "bogus"]),
]


@pytest.mark.parametrize(("config", "expected"), UNKNOWN)
def test_unknown_keys_and_names_exit_2_with_a_suggestion(
    cli, tmp_path: Path, config: dict, expected: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    _one_message(cli("check", path, "--run-dir", tmp_path / "run"), *expected)
    assert not (tmp_path / "run").exists()


USER_MODULE = """
raise RuntimeError("set DATA_ROOT first")
"""
OWN_CODE = """
from torch import nn


def model_raises(width=4):
    raise ValueError(f"width {width} is not a multiple of 8")


def data_wrong_args(size=16):
    return None
"""


@pytest.mark.parametrize(
    ("key", "name", "expected"),
    [
        ("model.name", "h4_no_such_module:make", ["model.name", "cannot import", "h4_no_such"]),
        ("model.name", "h4_own:nope", ["model.name", "has no function 'nope'"]),
        ("model.name", "h4_own:model_raises", ["model.name", "ValueError", "multiple of 8"]),
        (
            "data.name",
            "h4_broken_import:make",
            ["data.name", "importing 'h4_broken_import' raised RuntimeError", "DATA_ROOT"],
        ),
        ("data.name", "h4_own:data_wrong_args", ["data.args", "does not accept"]),
    ],
)
def test_module_function_missing_or_raising_exits_2(
    cli, tmp_path: Path, key: str, name: str, expected: list[str]
) -> None:
    (tmp_path / "h4_own.py").write_text(OWN_CODE)
    (tmp_path / "h4_broken_import.py").write_text(USER_MODULE)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(key, name)))
    _one_message(cli("check", path, "--run-dir", tmp_path / "run", cwd=tmp_path), *expected)
    assert not (tmp_path / "run").exists()  # a config that does not build leaves no directory


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--from", "overfit-3"], ["--from", "overfit-3", "Did you mean"]),
        (["--to", "ful-data"], ["--to", "Did you mean 'full-data'"]),
        (["--from", "full-data", "--to", "overfit-one"], ["comes after"]),
        (["--set", "optim.lr"], ["--set", "KEY=VALUE"]),
        (["--set", "optim.lr=[1,"], ["--set", "not valid YAML"]),
        (["--set", "optim.lr=-3"], ["optim.lr", "greater than 0"]),
        (["--device", "cuda:7"], ["cuda:7"]),
        (["--bogus"], ["No such option", "--bogus"]),
    ],
)
def test_bad_command_line_exits_2(
    cli, tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(BASE))
    _one_message(cli("run", path, "--run-dir", tmp_path / "run", *args), *expected)


def test_existing_run_dir_is_never_overwritten(cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text('{"precious": true}')
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(BASE))
    _one_message(cli("run", path, "--run-dir", run_dir), "exists and is not empty", "--resume")
    assert (run_dir / "summary.json").read_text() == '{"precious": true}'
    assert sorted(p.name for p in run_dir.iterdir()) == ["summary.json"]


def test_resume_refuses_a_run_of_another_config(cli, tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(BASE))
    run_dir = tmp_path / "run"
    assert cli("check", path, "--run-dir", run_dir).code == 0
    summary = (run_dir / "summary.json").read_text()
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(_with("optim.lr", 0.5)))
    _one_message(cli("run", other, "--resume", run_dir), "another config", "config.yaml")
    _one_message(cli("run", "--resume", run_dir, "--set", "seed=3"), "another config", "--resume")
    assert (run_dir / "summary.json").read_text() == summary
    # a log-only change (how often to flush or checkpoint) is not another config
    assert cli("run", "--resume", run_dir, "--set", "log.flush_every=5").code == 0


@pytest.mark.parametrize(
    ("prepare", "args", "expected"),
    [
        ("nothing", ["run"], ["missing CONFIG", "--resume"]),
        ("empty dir", ["run", "--resume", "{dir}"], ["config file not found"]),
        ("no summary", ["run", "{cfg}", "--resume", "{dir}"], ["no summary.json", "--resume"]),
        ("both dirs", ["run", "{cfg}", "--resume", "{dir}", "--run-dir", "{dir}"], ["--run-dir"]),
        ("binary config", ["run", "{bin}"], ["not a UTF-8 text file"]),
        ("list config", ["run", "{list}"], ["top level must be a mapping"]),
    ],
)
def test_resume_and_file_mistakes_exit_2(
    cli, tmp_path: Path, prepare: str, args: list[str], expected: list[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00binary\x80")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    fill = {
        "dir": run_dir,
        "cfg": tmp_path / "ok.yaml",
        "bin": tmp_path / "bin.yaml",
        "list": tmp_path / "list.yaml",
    }
    _one_message(cli(*[a.format(**fill) for a in args]), *expected)
