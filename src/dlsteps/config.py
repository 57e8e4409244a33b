"""YAML + stage overlays + ``--set`` → one validated, frozen config per stage.

Every key is declared once below with a one-line doc; unknown keys are rejected with a
suggestion, and every error names the file and the dotted key (``stages.full-data.optim.lr``).
The schema defaults *are* the built-in default config (shapes + tiny_unet), so
``dlsteps stage overfit-one`` works without a file.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from dlsteps.errors import ConfigError, did_you_mean
from dlsteps.stages import TRAINING_STAGES, canonical_stage

Task = Literal["classification", "segmentation", "regression", "generative"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_num_workers() -> int:
    from dlsteps.data.loading import default_num_workers  # torch only when a config needs it

    return default_num_workers()


class DataConfig(_Strict):
    name: str = Field("shapes", description="built-in data set or 'package.module:function'")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for it")
    batch_size: PositiveInt = Field(16, description="train batch size")
    val_batch_size: PositiveInt | None = Field(None, description="default: batch_size")
    num_workers: NonNegativeInt = Field(
        default_factory=_default_num_workers,
        description="DataLoader worker processes; unset: 0 without CUDA, else about one "
        "per CPU core of this GPU's share (at most 8)",
    )
    pin_memory: bool | None = Field(None, description="default: on when training on CUDA")
    persistent_workers: bool | None = Field(
        None, description="keep workers between epochs; default: on when num_workers > 0"
    )
    ignore_index: int = Field(255, description="segmentation label excluded from loss/metrics")


class ModelConfig(_Strict):
    name: str = Field("tiny_unet", description="built-in model or 'package.module:function'")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for it")


class OptimConfig(_Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: PositiveFloat = 1.0e-3
    weight_decay: NonNegativeFloat = 0.0
    momentum: NonNegativeFloat = Field(0.9, description="sgd only")
    scheduler: Literal["none", "cosine", "step"] = Field("none", description="LR decay")
    warmup_steps: NonNegativeInt = Field(0, description="linear LR warm-up steps")
    step_size: PositiveInt = Field(100, description="'step' scheduler: steps between decays")
    gamma: PositiveFloat = Field(0.1, description="'step' scheduler: decay factor")
    grad_clip: PositiveFloat | None = Field(None, description="max gradient norm; none: off")


class LogConfig(_Strict):
    flush_every: PositiveInt = Field(
        25, description="steps between copies of device-side values to the host and disk"
    )
    checkpoint_every: NonNegativeInt = Field(
        0, description="steps between periodic checkpoints; 0: only at stage end"
    )
    checkpoint_minutes: NonNegativeFloat = Field(
        10.0, description="minutes between periodic checkpoints (checked at flushes); 0: off"
    )
    progress_every: PositiveInt = Field(50, description="steps between plain progress lines")


class MetricsConfig(_Strict):
    primary: str = Field(
        "auto",
        description="val metric the augment/scale-up gates compare; auto: miou "
        "(segmentation), accuracy (classification), rmse (regression), psnr (generative)",
    )
    every: NonNegativeInt = Field(
        0, description="steps between full val passes for metrics; 0: only at stage end"
    )
    images_every: NonNegativeInt = Field(
        0, description="steps between sample pictures in TensorBoard; 0: only at stage end"
    )
    images: NonNegativeInt = Field(
        8, description="fixed val samples shown as input / target / prediction; 0: none"
    )


class CriticConfig(_Strict):
    name: str = Field("conv_critic", description="built-in critic or 'package.module:function'")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for it")


class AdversarialConfig(_Strict):
    """The ``adversarial`` stage (generative task): WGAN-GP on top of the L1 generator."""

    critic: CriticConfig = Field(default_factory=CriticConfig)
    critic_steps: PositiveInt = Field(5, description="critic updates per generator step")
    critic_lr: PositiveFloat = Field(
        1.0e-3, description="critic Adam LR, betas (0, 0.9); the paper's 1e-4 is slow for a stage"
    )
    gp_weight: NonNegativeFloat = Field(10.0, description="gradient-penalty weight (lambda)")
    l1_weight: NonNegativeFloat = Field(
        100.0, description="weight of L1 in the generator loss; the adversarial term has 1"
    )


class GateConfig(_Strict):
    train_loss_below: NonNegativeFloat = Field(0.01, description="overfit stages: target loss")
    window: PositiveInt = Field(10, description="batches averaged for the train-loss gate")
    max_seconds: PositiveFloat | None = Field(None, description="wall-time budget of the stage")
    min_val_improvement: float = Field(
        0.02, ge=0, lt=1, description="full-data: relative drop of best smoothed val loss"
    )
    val_smooth: PositiveInt = Field(10, description="val-loss points in the smoothing window")
    beat_baseline: bool = Field(True, description="full-data: must beat the trivial predictor")
    max_batch_seconds: PositiveFloat = Field(1.0, description="median seconds per batch")
    tolerance: NonNegativeFloat = Field(0.0, description="augment/scale-up: allowed metric drop")
    max_l1_increase: NonNegativeFloat = Field(
        0.1, description="adversarial: allowed relative rise of the full-val L1 over L1-only"
    )
    max_wasserstein_ratio: PositiveFloat = Field(
        5.0,
        description="adversarial: Wasserstein estimate / real-generated L2 distance above "
        "this: critic diverging (a 1-Lipschitz critic stays <= 1)",
    )
    min_wasserstein_ratio: NonNegativeFloat = Field(
        0.01, description="adversarial: median of that ratio below this: critic collapsed"
    )


class StageConfig(_Strict):
    """The knobs of one stage; any top-level key may be overridden beside them."""

    steps: PositiveInt | None = Field(None, description="optimizer steps (overrides epochs)")
    epochs: PositiveInt | None = Field(None, description="passes over the stage's train set")
    samples: PositiveInt | None = Field(None, description="overfit stages: train samples used")
    val_every: PositiveInt = Field(1, description="steps between val-batch forwards")
    early_stop: bool = Field(True, description="overfit stages: stop once the gate is met")
    init_from: str | None = Field(None, description="stage whose checkpoint starts this one")
    augmentations: Literal["auto"] | list[dict[str, dict[str, Any]]] = Field(
        default_factory=list,
        description="train-only transforms: names or {name: {args}} (see dlsteps.augment); "
        "a {train: [...]} mapping is accepted, a val entry is refused; auto: hflip and "
        "gaussian_noise for image inputs, none for others",
    )
    class_weights: Literal["none", "auto", "inverse", "median"] | list[PositiveFloat] = Field(
        "none",
        description="loss weight per class: inverse or median (= auto) frequency of the "
        "train labels, or an explicit list",
    )
    gate: GateConfig = Field(default_factory=GateConfig)

    @field_validator("augmentations", mode="before")
    @classmethod
    def _augmentations(cls, value: Any) -> str | list[dict[str, dict[str, Any]]]:
        from dlsteps.augment import normalize_entries

        if value == "auto":
            return value
        if isinstance(value, dict):
            if other := [k for k in value if k != "train"]:
                raise ValueError(
                    f"'{other[0]}': dlsteps never augments the {other[0]} set; every stage's "
                    "metric is measured on the same unaugmented val data, so only 'train' "
                    "may be given"
                )
            value = value.get("train") or []
        if not isinstance(value, list):
            raise ValueError("expected a list of augmentation names or {name: {args}}")
        return normalize_entries(value)

    @field_validator("init_from")
    @classmethod
    def _known_stage(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return canonical_stage(value, "init_from")
        except ConfigError as exc:  # pydantic turns ValueError into a located message
            raise ValueError(str(exc).removeprefix("init_from: ")) from None


class PrunerConfig(_Strict):
    """How ``dlsteps ablate`` stops unpromising trials early (an Optuna pruner)."""

    name: Literal["successive_halving", "hyperband", "median", "none"] = Field(
        "successive_halving", description="Optuna pruner; none: every trial runs to its end"
    )
    min_steps: PositiveInt | None = Field(
        None,
        description="optimizer steps before the first rung (the earliest kill); default: the "
        "stage's steps / reduction_factor**2",
    )
    reduction_factor: int = Field(
        3, ge=2, description="successive_halving/hyperband: the best 1/N go on at each rung"
    )
    startup_trials: NonNegativeInt = Field(
        1, description="median: trials that run to their end before any is pruned"
    )


class SearchRange(_Strict):
    """One searched key: a range (``low``, ``high``, ``log``) or a list of ``choices``."""

    low: int | float | None = Field(None, description="smallest value (ints: an int range)")
    high: int | float | None = Field(None, description="largest value")
    log: bool = Field(False, description="sample on a log scale (learning rates)")
    choices: list[Any] | None = Field(None, description="the values to choose from instead")

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("choices must not be empty")
        elif self.low is None or self.high is None:
            raise ValueError("give low and high, or choices")
        elif self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        elif self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class AblateConfig(_Strict):
    """``dlsteps ablate``: variants of this config trained side by side, each a trial of
    one stage; unpromising ones are stopped early."""

    stage: str = Field("full-data", description="the training stage every trial runs")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="dotted key -> values; every combination is a trial"
    )
    search: dict[str, SearchRange] = Field(
        default_factory=dict, description="dotted key -> range or choices, drawn by `sampler`"
    )
    sampler: Literal["tpe", "random"] = Field("tpe", description="search: Optuna sampler")
    trials: PositiveInt = Field(20, description="search: number of trials")
    metric: str = Field("val/loss", description="logged tag trials are compared on (smoothed)")
    direction: Literal["auto", "minimize", "maximize"] = Field(
        "auto", description="auto: minimize a tag ending in loss/rmse/mae, else maximize"
    )
    smooth: PositiveInt | None = Field(
        None, description="points in the metric's trailing mean; default: the gate's val_smooth"
    )
    parallel: PositiveInt = Field(
        1, description="worker processes on this machine (spread over the GPUs when several)"
    )
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)

    @field_validator("stage")
    @classmethod
    def _training_stage(cls, value: str) -> str:
        try:
            name = canonical_stage(value, "stage")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("stage: ")) from None
        if name not in TRAINING_STAGES:
            raise ValueError(f"'{name}' does not train; choose one of {', '.join(TRAINING_STAGES)}")
        return name

    @model_validator(mode="after")
    def _grid_or_search(self) -> AblateConfig:
        if self.grid and self.search:
            raise ValueError("give a grid or a search, not both")
        if empty := [k for k, v in self.grid.items() if not v]:
            raise ValueError(f"grid.{empty[0]}: no values")
        return self


class Config(_Strict):
    name: str | None = Field(None, description="run name; default: the config file's stem")
    task: Task = "segmentation"
    seed: int = 0
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Literal["32", "bf16", "16"] = Field("32", description="autocast dtype on CUDA")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)
    ablate: AblateConfig | None = Field(None, description="variants for `dlsteps ablate`")
    stages: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-stage overlays: any key above + stage knobs"
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        ok = value in ("auto", "cpu", "cuda", "mps") or (
            value.startswith("cuda:") and value[5:].isdigit()
        )
        if not ok:
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return value


# What each stage does when the config says nothing: the design's defaults.
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "overfit-one": {"samples": 1, "steps": 300},
    "overfit-few": {"samples": 10, "steps": 500, "gate": {"max_seconds": 300.0}},
    "full-data": {"epochs": 3},
    # augment and scale-up train as long as full-data unless told otherwise, so their
    # gates compare like with like (see _same_length_as_full_data)
    # augment continues from full-data's weights; both top stages allow a drop of 0.02 in
    # the primary metric, about the noise of a small val set's metric between seeds
    "augment": {
        "init_from": "full-data",
        "augmentations": "auto",
        "class_weights": "auto",
        "gate": {"tolerance": 0.02},
    },
    "scale-up": {"gate": {"tolerance": 0.02}},
    "adversarial": {"epochs": 3, "init_from": "full-data"},
}


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


def load_config(path: str | Path | None, sets: Sequence[str] = ()) -> LoadedConfig:
    """Read, overlay and validate; raise ``ConfigError`` naming file and key on any mistake."""
    where = str(path) if path is not None else "<built-in default>"
    raw = _read_yaml(Path(path)) if path is not None else {}
    for assignment in sets:
        _apply_set(raw, assignment)
    return build_config(raw, where, source=str(path) if path is not None else None)


def build_config(raw: dict[str, Any], where: str, source: str | None = None) -> LoadedConfig:
    """Validate a raw mapping: the top level, then every stage with its overlay applied."""
    base = _validate(Config, raw, where, prefix="")
    overlays: dict[str, dict[str, Any]] = {}
    for key, overlay in base.stages.items():
        stage = canonical_stage(key, f"{where}: stages.{key}")
        if not isinstance(overlay, dict):
            raise ConfigError(f"{where}: stages.{key}: expected a mapping, got {overlay!r}")
        overlays[stage] = overlay
    plans = {}
    top_keys = set(Config.model_fields) - {"stages"}
    for stage in TRAINING_STAGES:
        overlay = overlays.get(stage, {})
        top = {k: v for k, v in overlay.items() if k in top_keys}
        knobs = {k: v for k, v in overlay.items() if k not in top_keys}
        merged = _deep_merge({k: v for k, v in raw.items() if k != "stages"}, top)
        config = _validate(Config, merged, where, prefix=f"stages.{stage}.")
        knob_values = _deep_merge(copy.deepcopy(STAGE_DEFAULTS.get(stage, {})), knobs)
        if stage in ("augment", "scale-up") and not {"steps", "epochs"} & set(knob_values):
            # as long as full-data, so the gate's metric comparison is like with like
            full = plans["full-data"].knobs
            knob_values.update(steps=full.steps, epochs=full.epochs)
        stage_knobs = _validate(StageConfig, knob_values, where, prefix=f"stages.{stage}.")
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


def _validate(model: type[_Strict], data: dict[str, Any], where: str, prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, model, where, prefix)) from None


def _explain(exc: ValidationError, model: type[BaseModel], where: str, prefix: str) -> str:
    lines = []
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal["))]
        dotted = prefix + ".".join(loc)
        if err["type"] == "extra_forbidden":
            fields = _fields_at(model, loc[:-1])
            lines.append(f"{where}: unknown key '{dotted}'.{did_you_mean(loc[-1], fields)}")
        elif err["type"] == "missing":
            lines.append(f"{where}: '{dotted}' is required")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {dotted}: {msg} (got {err.get('input')!r})")
    return "\n".join(dict.fromkeys(lines))


def _fields_at(model: type[BaseModel], path: Sequence[str]) -> list[str]:
    """Field names of the nested model at ``path``, for did-you-mean suggestions."""
    current: Any = model
    for part in path:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type):
            return []
        current = field.annotation
    fields = list(getattr(current, "model_fields", {}))
    if current is StageConfig:
        fields += list(Config.model_fields)
    return fields
