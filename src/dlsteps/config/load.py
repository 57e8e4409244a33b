"""YAML + stage overlays + ``--set`` → one validated, frozen config per stage.

Every error names where the value came from (the file, or the ``--set KEY=VALUE`` that
wrote it) and the dotted key (``stages.full-data.optim.lr``), with a did-you-mean for
unknown keys. A stage's knobs start from its record's overlay
(``ladder.stages``), and its ``gate`` accepts only the keys that stage's gate reads.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model

from dlsteps.config.schema import Config, StageConfig
from dlsteps.errors import ConfigError, did_you_mean
from dlsteps.ladder.stages import ALIASES, STAGES, TRAINING_STAGES, canonical_stage


@cache
def knobs_schema(stage: str) -> type[StageConfig]:
    """``StageConfig`` with the stage's own gate settings (its record's ``gate_schema``)."""
    gate = STAGES[stage].gate_schema
    if gate is None:
        return StageConfig
    return create_model(
        f"{gate.__name__}StageConfig",
        __base__=StageConfig,
        gate=(gate, Field(default_factory=gate)),
    )


@dataclass(frozen=True)
class StagePlan:
    """Everything one stage needs: the merged config and the stage's own knobs."""

    stage: str
    config: Config
    knobs: StageConfig


@dataclass(frozen=True)
class LoadedConfig:
    source: str | None
    raw: dict[str, Any]
    base: Config
    plans: Mapping[str, StagePlan]

    @property
    def name(self) -> str:
        if self.base.name:
            return self.base.name
        return Path(self.source).stem if self.source else "default"

    def plan(self, stage: str) -> StagePlan:
        return self.plans[canonical_stage(stage)]

    def configured(self, stage: str) -> bool:
        """Whether the config has an overlay for ``stage``: scale-up only means something
        once the user says what "bigger" is."""
        return any(canonical_stage(key) == stage for key in self.raw.get("stages") or {})


@dataclass(frozen=True)
class Where:
    """Where a value came from, for error messages: the file, unless a ``--set`` wrote it
    (or the mapping above it)."""

    file: str
    sets: tuple[str, ...] = ()  # the --set assignments as typed, in order

    def of(self, dotted: str) -> str:
        for assignment in reversed(self.sets):  # the last --set of a key wins
            key = _canonical_key(assignment.partition("=")[0].strip())
            if dotted == key or dotted.startswith(f"{key}.") or key.startswith(f"{dotted}."):
                return f"--set {assignment}"
        return self.file


def _canonical_key(key: str) -> str:
    """``stages.overfit-1.steps`` → ``stages.overfit-one.steps``, as errors spell it."""
    parts = key.split(".")
    if len(parts) > 1 and parts[0] == "stages":
        parts[1] = ALIASES.get(parts[1], parts[1])
    return ".".join(parts)


def load_config(path: str | Path | None, sets: Sequence[str] = ()) -> LoadedConfig:
    """Read, overlay and validate; raise ``ConfigError`` naming where and which key on any
    mistake."""
    where = str(path) if path is not None else "<built-in default>"
    raw = _read_yaml(Path(path)) if path is not None else {}
    for assignment in sets:
        _apply_set(raw, assignment)
    source = str(path) if path is not None else None
    return build_config(raw, Where(where, tuple(sets)), source=source)


def build_config(
    raw: dict[str, Any], where: str | Where, source: str | None = None
) -> LoadedConfig:
    """Validate a raw mapping: the top level, then every stage with its overlay applied."""
    where = where if isinstance(where, Where) else Where(where)
    raw = _stage_names_checked(raw, where)
    base = _validate(Config, raw, where, prefix="")
    overlays: dict[str, dict[str, Any]] = {}
    for key, overlay in base.stages.items():
        stage = canonical_stage(key, f"{where.of(f'stages.{key}')}: stages.{key}")
        if not isinstance(overlay, dict):
            raise ConfigError(
                f"{where.of(f'stages.{key}')}: stages.{key}: expected a mapping, got {overlay!r}"
            )
        overlays[stage] = overlay
    plans = {}
    top_keys = set(Config.model_fields) - {"stages"}
    for stage in TRAINING_STAGES:
        overlay = overlays.get(stage, {})
        top = {k: v for k, v in overlay.items() if k in top_keys}
        knobs = {k: v for k, v in overlay.items() if k not in top_keys}
        merged = _deep_merge({k: v for k, v in raw.items() if k != "stages"}, top)
        config = _validate(Config, merged, where, prefix=f"stages.{stage}.")
        record = STAGES[stage]
        knob_values = _deep_merge(copy.deepcopy(dict(record.overlay)), knobs)
        if isinstance(init := knob_values.get("init_from"), str):
            key = f"stages.{stage}.init_from"
            knob_values["init_from"] = canonical_stage(init, f"{where.of(key)}: {key}")
        if record.length_of and not {"steps", "epochs"} & set(knob_values):
            # as long as that stage, so the gate's metric comparison is like with like
            other = plans[record.length_of].knobs
            knob_values.update(steps=other.steps, epochs=other.epochs)
        stage_knobs = _validate(knobs_schema(stage), knob_values, where, prefix=f"stages.{stage}.")
        plans[stage] = StagePlan(stage, config, stage_knobs)
    plans["preflight"] = StagePlan("preflight", base, StageConfig())
    if "preflight" in overlays:
        plans["preflight"] = StagePlan(
            "preflight",
            _validate(
                Config, _deep_merge(dict(raw), overlays["preflight"]), where, "stages.preflight."
            ),
            StageConfig(),
        )
    return LoadedConfig(source=source, raw=raw, base=base, plans=plans)


def _stage_names_checked(raw: dict[str, Any], where: Where) -> dict[str, Any]:
    """``ablate.stage`` resolved to a training stage's name (aliases allowed), or a
    ``ConfigError`` naming the key: the schema is data and knows no stage records."""
    ablate = raw.get("ablate")
    if not isinstance(ablate, Mapping) or not isinstance(ablate.get("stage"), str):
        return raw
    key = f"{where.of('ablate.stage')}: ablate.stage"
    name = canonical_stage(ablate["stage"], key)
    if name not in TRAINING_STAGES:
        raise ConfigError(
            f"{key}: '{name}' does not train; choose one of {', '.join(TRAINING_STAGES)}"
        )
    return {**raw, "ablate": {**ablate, "stage": name}}


def resolved_dict(loaded: LoadedConfig) -> dict[str, Any]:
    """The fully resolved config as plain data: what ``config.yaml`` in a run dir holds."""
    out = loaded.base.model_dump(mode="json", exclude={"stages"})
    out["name"] = loaded.name
    out["stages"] = {
        name: {**plan.knobs.model_dump(mode="json"), **_diff(out, plan.config)}
        for name, plan in loaded.plans.items()
        if name != "preflight"
    }
    return out


def _diff(base: dict[str, Any], config: Config) -> dict[str, Any]:
    """Top-level keys whose value in a stage differs from the base (its overlay, resolved)."""
    mine = config.model_dump(mode="json", exclude={"stages"})
    return {k: v for k, v in mine.items() if k != "name" and base.get(k) != v}


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {type(data).__name__}"
        )
    return data


def _apply_set(raw: dict[str, Any], assignment: str) -> None:
    """``a.b.c=value`` with a YAML-typed value, written into ``raw`` in place."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: the value is not valid YAML") from exc
    set_dotted(raw, key.strip(), value, "--set")


def set_dotted(raw: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Write ``value`` at dotted ``key`` (``a.b.c``) into ``raw`` in place, creating
    mappings on the way; ``source`` (``--set``, ``ablate``) names who asked in errors."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            dotted = ".".join(parts[: i + 1])
            raise ConfigError(f"{source} {key}: '{dotted}' is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key != "args":
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _validate(model: type[BaseModel], data: dict[str, Any], where: Where, prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, model, where, prefix)) from None


def _explain(exc: ValidationError, model: type[BaseModel], where: Where, prefix: str) -> str:
    lines = []
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal["))]
        dotted = prefix + ".".join(loc)
        if err["type"] == "extra_forbidden":
            fields = _fields_at(model, loc[:-1])
            # a stage's own knobs first: 'stepz' there means 'steps', not the top-level 'step'
            own = _fields_at(model, loc[:-1], top_level=False)
            hint = did_you_mean(loc[-1], own) or did_you_mean(loc[-1], fields)
            if not hint and loc[:-1] == ["gate"]:
                hint = _gate_hint(loc[-1], fields)
            lines.append(f"{where.of(dotted)}: unknown key '{dotted}'.{hint}")
        elif err["type"] == "missing":
            lines.append(f"{where.of(dotted)}: '{dotted}' is required")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where.of(dotted)}: {dotted}: {msg} (got {err.get('input')!r})")
    return "\n".join(dict.fromkeys(lines))


def _gate_hint(key: str, fields: Sequence[str]) -> str:
    """For a gate key this stage's gate does not read: which stages' gates do, and what
    this one accepts."""
    owners = [
        name
        for name, stage in STAGES.items()
        if stage.gate_schema is not None and key in stage.gate_schema.model_fields
    ]
    plural = "s" if len(owners) > 1 else ""
    named = " and ".join([", ".join(owners[:-1]), owners[-1]] if len(owners) > 1 else owners)
    where = f" It is a setting of the {named} gate{plural}." if owners else ""
    return f"{where} This stage's gate accepts: {', '.join(fields)}."


def _fields_at(model: type[BaseModel], path: Sequence[str], top_level: bool = True) -> list[str]:
    """Field names of the nested model at ``path``, for did-you-mean suggestions (a
    stage's knobs with the top-level keys it may override, unless not ``top_level``)."""
    current: Any = model
    for part in path:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type):
            return []
        current = field.annotation
    fields = list(getattr(current, "model_fields", {}))
    if top_level and isinstance(current, type) and issubclass(current, StageConfig):
        fields += list(Config.model_fields)
    return fields
