"""The config schema: every key declared once, with a one-line doc.

Unknown keys are rejected with a suggestion (``config.load`` names the file and the
dotted key). The schema defaults *are* the built-in default config (shapes + tiny_unet),
so ``dlsteps stage overfit-one`` works without a file. Plain data: nothing here imports
torch; a stage's gate settings come from its record (``ladder.stages``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from dlsteps.config.augmentations import normalize_entries
from dlsteps.errors import did_you_mean
from dlsteps.losses import BUILTIN_LOSSES, is_loss_name
from dlsteps.tasks import task_names

# A task's name: a built-in (classification, segmentation, regression, generative) or one
# registered with ``tasks.register_task``.
TaskName = str


def check_device(value: str) -> str:
    """``device`` (the key, or ``--device``): raises ``ValueError`` on anything else."""
    ok = value in ("auto", "cpu", "cuda", "mps") or (
        value.startswith("cuda:") and value[5:].isdigit()
    )
    if not ok:
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
    return value


class _Strict(BaseModel):
    # NaN or infinity in a learning rate, a threshold or a weight would pass every ``> 0``
    # check and only show up as a broken run: refused here, naming the key
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(_Strict):
    name: str = Field("shapes", description="built-in data set or 'package.module:function'")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for it")
    batch_size: PositiveInt = Field(16, description="train batch size")
    val_batch_size: PositiveInt | None = Field(None, description="default: batch_size")
    num_workers: NonNegativeInt | None = Field(
        None,
        description="DataLoader worker processes; unset: 0 without CUDA, else about one "
        "per CPU core of this GPU's share (at most 8), chosen where the run starts",
    )
    pin_memory: bool | None = Field(None, description="default: on when training on CUDA")
    persistent_workers: bool | None = Field(
        None, description="keep workers between epochs; default: on when num_workers > 0"
    )
    ignore_index: int = Field(255, description="segmentation label excluded from loss/metrics")
    inputs: list[str] | None = Field(
        None,
        description="with `step`: the keys (or tuple indices) of a batch that are the model's "
        "inputs, so the task's checks and the input-independent baseline can run",
    )
    target: str | None = Field(
        None, description="with `step`: the key (or tuple index) of a batch that is the target"
    )

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        if isinstance(value, str | int):
            value = [value]
        return [str(v) for v in value] if isinstance(value, list) else value

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class ModelConfig(_Strict):
    name: str = Field(
        "tiny_unet",
        description="built-in model, 'torchvision:NAME', 'timm:NAME' or 'package.module:function'",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for it")
    output: str | int = Field(
        "auto",
        description="what of the forward's result is the prediction: auto (a tensor as it "
        "is; a dict's 'out' or 'logits'; a tuple's first element; an object's .logits), a "
        "dict key or attribute name, or a tuple index",
    )


class LossConfig(_Strict):
    name: str = Field(
        "auto",
        description="auto: the task's own (cross_entropy; mse for regression, l1 for "
        "generative, bce_with_logits for multilabel); cross_entropy, bce_with_logits, dice, "
        "dice_ce, focal, mse, l1, huber, or 'package.module:function'",
    )
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for it")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not is_loss_name(value):
            raise ValueError(
                f"unknown loss '{value}'.{did_you_mean(value, BUILTIN_LOSSES)} Built-ins: "
                f"{', '.join(BUILTIN_LOSSES)}; or auto, or 'package.module:function'"
            )
        return value


# optimizers and schedulers by short name; any other is a dotted class path
# (torch.optim.RAdam, torch.optim.lr_scheduler.OneCycleLR), resolved where the run starts
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")


def _dotted(value: str, short: tuple[str, ...], example: str) -> str:
    parts = value.split(".")
    if value in short or (len(parts) >= 2 and all(p.isidentifier() for p in parts)):
        return value
    raise ValueError(
        f"'{value}' is neither one of {', '.join(short)} nor a dotted class name such as "
        f"{example}.{did_you_mean(value, short)}"
    )


class SchedulerConfig(_Strict):
    name: str = Field("none", description="none | cosine | step, or a dotted class name")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for it")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dotted(value, SCHEDULERS, "torch.optim.lr_scheduler.OneCycleLR")


class OptimConfig(_Strict):
    name: str = Field("adam", description="adam | adamw | sgd, or a dotted class name")
    args: dict[str, Any] = Field(
        default_factory=dict, description="more keyword arguments for the optimizer"
    )
    lr: PositiveFloat = 1.0e-3
    weight_decay: NonNegativeFloat = 0.0
    momentum: NonNegativeFloat = Field(0.9, description="sgd only")
    scheduler: SchedulerConfig = Field(
        default_factory=SchedulerConfig,
        description="LR decay, stepped every optimizer step: none | cosine | step, a dotted "
        "torch.optim.lr_scheduler class name, or {name, args}",
    )
    warmup_steps: NonNegativeInt = Field(0, description="linear LR warm-up steps")
    step_size: PositiveInt = Field(100, description="'step' scheduler: steps between decays")
    gamma: PositiveFloat = Field(0.1, description="'step' scheduler: decay factor")
    grad_clip: PositiveFloat | None = Field(None, description="max gradient norm; none: off")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dotted(value, OPTIMIZERS, "torch.optim.RAdam")

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


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


class StageConfig(_Strict):
    """The knobs of one stage; any top-level key may be overridden beside them. Each stage
    adds its own ``gate`` (``config.load.knobs_schema``), from its record."""

    steps: PositiveInt | None = Field(None, description="optimizer steps (overrides epochs)")
    epochs: PositiveInt | None = Field(None, description="passes over the stage's train set")
    samples: PositiveInt | None = Field(None, description="overfit stages: train samples used")
    val_every: PositiveInt = Field(1, description="steps between val-batch forwards")
    early_stop: bool = Field(True, description="overfit stages: stop once the gate is met")
    init_from: str | None = Field(
        None, description="stage whose checkpoint starts this one (checked by config.load)"
    )
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

    @field_validator("augmentations", mode="before")
    @classmethod
    def _augmentations(cls, value: Any) -> str | list[dict[str, dict[str, Any]]]:
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

    stage: str = Field(
        "full-data", description="the training stage every trial runs (checked by config.load)"
    )
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

    @model_validator(mode="after")
    def _grid_or_search(self) -> AblateConfig:
        if self.grid and self.search:
            raise ValueError("give a grid or a search, not both")
        if empty := [k for k, v in self.grid.items() if not v]:
            raise ValueError(f"grid.{empty[0]}: no values")
        return self


class Config(_Strict):
    name: str | None = Field(None, description="run name; default: the config file's stem")
    task: TaskName = Field(
        "segmentation",
        description="classification | segmentation | regression | multilabel | generative, "
        "or a registered task",
    )
    step: str | None = Field(
        None,
        description="your own training step 'package.module:function', (model, batch) -> loss "
        "| (loss, outputs), for train and val; batches may be any structure",
    )
    seed: int = 0
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Literal["32", "bf16", "16"] = Field("32", description="autocast dtype on CUDA")
    threads: Literal["auto"] | PositiveInt = Field(
        "auto",
        description="torch CPU threads; auto: half the cores less the DataLoader workers, "
        "or as OMP_NUM_THREADS says when it is set (see dlsteps.train.threads)",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)
    ablate: AblateConfig | None = Field(None, description="variants for `dlsteps ablate`")
    stages: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-stage overlays: any key above + stage knobs"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        """The run directory is ``runs/<name>-<time>``: one folder name, inside ``runs/``."""
        if value is None:
            return value
        if not value.strip() or value in (".", "..") or any(c in value for c in "/\\\0"):
            raise ValueError(
                f"{value!r} is not a folder name: a run name may not be empty, '.' or '..', "
                "or hold / or \\ (the run directory is runs/<name>-<time>)"
            )
        return value

    @field_validator("task")
    @classmethod
    def _task(cls, value: str) -> str:
        if value not in task_names():
            raise ValueError(
                f"unknown task '{value}'.{did_you_mean(value, task_names())} "
                f"Tasks: {', '.join(task_names())}"
            )
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device(value)

    @field_validator("step")
    @classmethod
    def _step(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError(
                f"'{value}' is not 'package.module:function' (a function (model, batch) -> "
                "loss | (loss, outputs))"
            )
        return value

    @property
    def own_batches(self) -> bool:
        """Batches of any structure, trained through the config's own step or a
        LightningModule's training_step (not the task's loss on (input, target) pairs)."""
        return self.step is not None or self.model.name.startswith("lightning:")

    @property
    def declares_task(self) -> bool:
        """Whether the config names its task (not the default): with ``step``, only then
        do the task's checks (label range, loss at init, baseline) run."""
        return "task" in self.model_fields_set
