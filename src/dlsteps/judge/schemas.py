"""Each gate's own settings (``stages.<stage>.gate``), plain pydantic.

A stage accepts only the keys its gate reads: ``stages.overfit-one.gate.tolerance`` is an
unknown key (exit 2, with a did-you-mean), not a setting silently ignored. Every training
stage's gate has ``window``, ``val_smooth`` (the ablation pruner smooths with it),
``max_seconds`` (the wall-time budget) and ``max_batch_seconds`` (the speed report).
"""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
)


class TrainingGate(BaseModel):
    """What every training stage's gate reads."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    window: PositiveInt = Field(10, description="batches averaged for the train-loss figures")
    val_smooth: PositiveInt = Field(10, description="val-loss points in the smoothing window")
    max_seconds: PositiveFloat | None = Field(None, description="wall-time budget of the stage")
    max_batch_seconds: PositiveFloat = Field(1.0, description="median seconds per batch")


class OverfitGate(TrainingGate):
    """overfit-one, overfit-few: the train loss must reach ``train_loss_below``."""

    train_loss_below: NonNegativeFloat = Field(0.01, description="target train loss")


class FullDataGate(TrainingGate):
    """full-data: the val loss must improve and beat the input-independent baseline."""

    min_val_improvement: float = Field(
        0.02, ge=0, lt=1, description="relative drop of the best smoothed val loss"
    )
    beat_baseline: bool = Field(True, description="must beat the trivial predictor")


class CompareGate(TrainingGate):
    """augment, scale-up: the primary val metric against an earlier stage's."""

    tolerance: NonNegativeFloat = Field(0.0, description="allowed drop of the primary metric")


class AdversarialGate(TrainingGate):
    """adversarial: the critic stays sane and the val L1 does not rise much."""

    max_l1_increase: NonNegativeFloat = Field(
        0.1, description="allowed relative rise of the full-val L1 over L1-only"
    )
    max_wasserstein_ratio: PositiveFloat = Field(
        5.0,
        description="Wasserstein estimate / real-generated L2 distance above this: critic "
        "diverging (a 1-Lipschitz critic stays <= 1)",
    )
    min_wasserstein_ratio: NonNegativeFloat = Field(
        0.01, description="median of that ratio below this: critic collapsed"
    )
