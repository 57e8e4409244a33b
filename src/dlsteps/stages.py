"""The ladder: stage names, order, aliases and per-stage default knobs (a contract).

Stages differ only by a config overlay and a gate; the training loop is the same for
all of them (``engine.fit``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dlsteps.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class StageSpec:
    name: str
    trains: bool
    summary: str
    gate: str


LADDER: tuple[StageSpec, ...] = (
    StageSpec(
        "preflight",
        False,
        "no training: shapes, label range, deterministic reads, split overlap, loss at "
        "init, gradient reach, parameter count, fancy features",
        "every check passes; advice-only findings are warnings",
    ),
    StageSpec(
        "overfit-one",
        True,
        "one train sample, every regularizer off; the input is effectively ignored",
        "mean train loss of the last `window` batches <= `train_loss_below` within `steps`",
    ),
    StageSpec(
        "overfit-few",
        True,
        "`samples` train samples in one batch; the output must now depend on the input",
        "train loss <= `train_loss_below` within `steps` and `max_seconds`",
    ),
    StageSpec(
        "full-data",
        True,
        "the whole train set; must generalize for the first time; speed measured",
        "smoothed val loss improves by >= `min_val_improvement`, beats the input-independent "
        "baseline, median batch <= `max_batch_seconds`",
    ),
    StageSpec(
        "augment",
        True,
        "class weights and train-only augmentation",
        "primary val metric not worse than full-data's by more than `tolerance`",
    ),
    StageSpec(
        "scale-up",
        True,
        "bigger model, dropout/batchnorm/LR decay back on, mixed precision, several GPUs",
        "primary val metric not worse than the best earlier stage by more than `tolerance`",
    ),
)

GENERATIVE_TOP = StageSpec(
    "adversarial",
    True,
    "the L1 generator continued with a Wasserstein critic (gradient penalty)",
    "no NaN/divergence, val L1 within `max_l1_increase` of full-data's, Wasserstein estimate "
    "bounded (critic neither diverging nor collapsed); refused until the L1 stages passed",
)

STAGE_NAMES: tuple[str, ...] = (*(s.name for s in LADDER), GENERATIVE_TOP.name)
ALIASES = {"overfit-1": "overfit-one", "overfit-10": "overfit-few"}
TRAINING_STAGES = (*(s.name for s in LADDER if s.trains), GENERATIVE_TOP.name)
# Stages whose whole point is that nothing but the data varies: regularizers are forced off.
OVERFIT_STAGES = ("overfit-one", "overfit-few")


def canonical_stage(name: str, key: str = "stage") -> str:
    """Map an alias to its stage name; unknown names are a config error naming ``key``."""
    name = ALIASES.get(name, name)
    if name not in STAGE_NAMES:
        raise ConfigError(
            f"{key}: unknown stage '{name}'."
            f"{did_you_mean(name, [*STAGE_NAMES, *ALIASES])} "
            f"Stages: {', '.join(STAGE_NAMES)}."
        )
    return name


def ladder_for(task: str) -> tuple[StageSpec, ...]:
    """The stages of a task, in order: generative replaces augment/scale-up by adversarial."""
    if task == "generative":
        return (*LADDER[:4], GENERATIVE_TOP)
    return LADDER


def spec(name: str) -> StageSpec:
    return next(s for s in (*LADDER, GENERATIVE_TOP) if s.name == name)
