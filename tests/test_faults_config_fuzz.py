"""A thousand malformed configs, fifty ``dlsteps check``s and two hundred ``--set`` strings:
every one is answered with exit 0, 1 or 2 (a config that loads, or one ``ConfigError``
naming the key), never a traceback; a run name never leads out of ``runs/``.

Configs are drawn by hypothesis as mutations of a valid one: values of another type at
any key, unknown keys at every depth, huge, negative, NaN and infinite numbers, stage
knobs on the wrong stage, and run names with ``/`` or ``..``. The loader runs in-process
(no torch, a millisecond a config); the checks run the real CLI on the few that load.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dlsteps.config import load_config
from dlsteps.config.load import build_config
from dlsteps.errors import ConfigError, UserError
from dlsteps.rundir.run import RunDir

BASE: dict[str, Any] = {
    "name": "fuzz",
    "task": "segmentation",
    "seed": 0,
    "device": "cpu",
    "data": {
        "name": "shapes",
        "args": {"num_train": 16, "num_val": 8, "size": 16, "num_classes": 3},
        "batch_size": 4,
    },
    "model": {"name": "tiny_unet", "args": {"width": 4}},
    "optim": {"name": "adam", "lr": 0.003, "scheduler": "cosine", "warmup_steps": 2},
    "log": {"flush_every": 5, "checkpoint_every": 10},
    "stages": {
        "overfit-one": {"steps": 10, "gate": {"train_loss_below": 0.5}},
        "overfit-few": {"samples": 4, "steps": 10},
        "full-data": {"epochs": 2, "val_every": 2},
        "augment": {"init_from": "full-data", "augmentations": ["hflip"]},
    },
}
STAGE_NAMES = ["overfit-one", "overfit-few", "full-data", "augment", "scale-up", "preflight"]
KNOBS = ["steps", "epochs", "samples", "val_every", "early_stop", "init_from", "gate",
         "augmentations", "class_weights", "window", "train_loss_below", "tolerance"]  # fmt: skip
ESCAPES = ["../out", "a/b", "..", ".", "/abs", "x/../../y", "..\\win", "", " ", "a\0b", "~"]

numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 10**300, -(10**300)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324]),
)
scalars = st.one_of(
    numbers, st.booleans(), st.none(), st.text(max_size=12), st.sampled_from(ESCAPES)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
keys = st.one_of(st.sampled_from(KNOBS + STAGE_NAMES + ["args", "name"]), st.text(max_size=10))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of ``node`` (mappings only), the root included."""
    out = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            out += _paths(child, (*prefix, key))
    return out


@st.composite
def mutated(draw: st.DrawFn, max_mutations: int = 4) -> dict[str, Any]:
    config = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _paths(config)
        kind = draw(st.sampled_from(["replace", "unknown", "knob", "name", "delete"]))
        if kind == "name":
            config["name"] = draw(st.sampled_from(ESCAPES) | st.text(max_size=6))
            continue
        if kind == "knob":  # a stage knob on any stage, a typo'd stage, or the wrong gate
            stage = draw(st.sampled_from(STAGE_NAMES) | st.text(max_size=8))
            overlay = config.setdefault("stages", {})
            if not isinstance(overlay, dict):
                continue
            target = overlay.setdefault(stage, {})
            if isinstance(target, dict):
                target[draw(st.sampled_from(KNOBS))] = draw(values)
            continue
        path = draw(st.sampled_from(paths))
        node = config
        for key in path[:-1]:
            node = node[key]
        if kind == "unknown" or not path:  # a key nobody defined, at this depth
            holder = node[path[-1]] if path and isinstance(node[path[-1]], dict) else node
            if isinstance(holder, dict):
                holder[draw(keys)] = draw(values)
        elif kind == "delete":
            del node[path[-1]]
        else:
            node[path[-1]] = draw(values)
    return config


def _answer(raw: Any) -> Any:
    """What the loader says: a config, or the one error a user may see (exit 2)."""
    try:
        return build_config(raw, "fuzz.yaml", source="fuzz.yaml")
    except UserError as exc:
        assert str(exc), "an error says what is wrong"
        return exc


SEEN = {"loaded": 0, "refused": 0}


@pytest.mark.xdist_group("config-fuzz")  # one worker: the next test reads its tally
@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(config=mutated())
def test_a_thousand_mutated_configs_load_or_are_refused_naming_the_key(config, tmp_path_factory):
    answer = _answer(config)
    if isinstance(answer, UserError):
        SEEN["refused"] += 1
        return
    SEEN["loaded"] += 1
    name = answer.name
    assert "/" not in name and "\\" not in name and name not in (".", ".."), name
    root = tmp_path_factory.getbasetemp() / "runs"
    made = RunDir.new(root, name)
    assert made.path.resolve().parent == root.resolve(), f"{name!r} left runs/"
    made.path.rmdir()


@pytest.mark.xdist_group("config-fuzz")
def test_the_fuzzer_reached_both_answers():
    """Runs after the thousand (file order): both kinds were drawn, so neither was empty."""
    if SEEN["loaded"] + SEEN["refused"] == 0:
        pytest.skip("the fuzz test did not run in this process")
    assert SEEN["loaded"] > 20 and SEEN["refused"] > 200, SEEN


# mild mutations (one, of the kinds a config that still loads may have), for dlsteps check
mild = st.fixed_dictionaries(
    {
        "path": st.sampled_from(
            [
                ("seed",),
                ("optim", "lr"),
                ("optim", "warmup_steps"),
                ("stages", "overfit-one", "steps"),
                ("stages", "full-data", "epochs"),
                ("stages", "full-data", "steps"),
                ("stages", "overfit-few", "samples"),
                ("log", "flush_every"),
                ("name",),
                ("optim", "scheduler"),
            ]
        ),
        "value": st.one_of(
            st.integers(-3, 10**12), st.floats(allow_nan=True), st.sampled_from(ESCAPES)
        ),
    }
)


@pytest.mark.slow
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(change=mild)
def test_dlsteps_check_on_fifty_configs_that_load_answers_0_1_or_2(cli, tmp_path, change):
    config = json.loads(json.dumps(BASE))
    node = config
    *parents, last = change["path"]
    for key in parents:
        node = node[key]
    node[last] = change["value"]
    assume(not isinstance(_answer(config), UserError))
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("check", path, "--quiet", cwd=tmp_path)
    assert result.code in (0, 1, 2), result
    assert "Traceback" not in result.err, result.err
    for made in (tmp_path / "runs").glob("*"):
        assert made.resolve().parent == (tmp_path / "runs").resolve()
    for stray in tmp_path.iterdir():
        assert stray.name in ("fuzz.yaml", "runs"), f"{stray} written outside runs/"


KNOWN_KEYS = [
    "seed", "name", "task", "device", "precision", "threads", "optim.lr", "optim.name",
    "optim.scheduler", "optim.warmup_steps", "data.batch_size", "data.args.size",
    "model.args.width", "stages.full-data.steps", "stages.overfit-few.samples",
    "stages.overfit-one.gate.train_loss_below", "log.flush_every", "stages", "data",
]  # fmt: skip
set_keys = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-_=[]{} ", max_size=20),
)
YAML_TRAPS = (
    "", "[", "{", "]", "{a: [", "!!python/object:os.system", "&a [*a]", ".nan", "-.inf",
    "1e999", "0x10", "~", "null", "yes", "'unclosed", "[1, 2", "{x: 1}", "- a\n- b", "\t",
    "%TAG", "@x", "`x`", "../../etc", "1_000", "0o17",
)  # fmt: skip
set_values = st.one_of(st.text(max_size=20), st.sampled_from(YAML_TRAPS))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=set_keys, value=set_values, bare=st.booleans())
def test_two_hundred_generated_set_strings_load_or_name_the_set(key, value, bare, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz-set.yaml"
    if not path.exists():
        path.write_text(yaml.safe_dump(BASE))
    assignment = key if bare else f"{key}={value}"
    try:
        loaded = load_config(path, [assignment])
    except ConfigError as exc:
        assert "--set" in str(exc) or "fuzz-set.yaml" in str(exc), str(exc)
        return
    assert "/" not in loaded.name and loaded.name not in (".", "..")


def test_run_names_that_leave_runs_are_refused_at_the_config(tmp_path: Path) -> None:
    for name in ("../out", "a/b", "..", "x/../../y", ".", "a\\b", "a\0b", ""):
        with pytest.raises(ConfigError, match="name"):
            build_config({**BASE, "name": name}, "fuzz.yaml")
