"""The ladder's stages: one record per stage, everything a stage is in one place.

A record holds the stage's name and aliases (a contract), what kind of stage it is, its
default knobs (the overlay the config starts from), its gate (a function of logged curves,
``judge.gates``) with that gate's own settings schema (``judge.schemas``), and the stages
that must have passed before it may run. The runner loops over the records of the task's
ladder; no other module branches on a stage's name.

Imports nothing heavy (no torch): the config validates against these records, and
``dlsteps stages`` prints them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dlsteps.errors import ConfigError, did_you_mean
from dlsteps.judge.gates import (
    Gate,
    gate_adversarial,
    gate_augment,
    gate_full_data,
    gate_overfit_few,
    gate_overfit_one,
    gate_scale_up,
)
from dlsteps.judge.rules import likely_cause
from dlsteps.judge.schemas import (
    AdversarialGate,
    CompareGate,
    FullDataGate,
    OverfitGate,
    TrainingGate,
)
from dlsteps.judge.speed import speed_figures
from dlsteps.judge.verdict import Findings, Primary, Verdict
from dlsteps.logbook.curves import Curves

Kind = Literal["check", "fit", "adversarial"]


@dataclass(frozen=True)
class Stage:
    name: str
    kind: Kind  # check: no training (preflight); fit: the engine's loop; adversarial: + critic
    summary: str  # what it does, for `dlsteps stages`
    gate_text: str  # what its gate checks, for `dlsteps stages`
    aliases: tuple[str, ...] = ()
    gate: Gate | None = None  # None: the stage's own checks are its verdict (preflight)
    gate_schema: type[TrainingGate] | None = None  # stages.<name>.gate accepts these keys
    overlay: Mapping[str, Any] = field(default_factory=dict)  # default knobs
    # stages that must have passed (in this run or its directory), else the stage is refused
    prerequisites: tuple[str, ...] = ()
    refused_because: str = ""  # why the prerequisites matter, for the refusal's message
    plain: bool = False  # every regularizer off, its samples in one batch, early stop
    unconfigured: str = ""  # set: skipped with this note unless stages.<name> is configured
    length_of: str | None = None  # trains as long as this stage unless steps/epochs are set
    logs_baseline: bool = False  # logs the input-independent predictor's val loss
    shows_worst: bool = False  # pictures the val samples with the highest loss at its end
    distributed: bool = True  # runs under --nproc

    @property
    def trains(self) -> bool:
        return self.kind != "check"

    def judge(
        self,
        curves: Curves,
        gate: TrainingGate,
        history: Mapping[str, Verdict] | None = None,
        primary: Primary | None = None,
        findings: Findings | None = None,
    ) -> Verdict:
        """The verdict of this training stage from its curves, the earlier stages' verdicts,
        the primary metric's definition and what the stage found beyond its curves: what
        the runner records and what ``dlsteps report`` and the tests re-judge, through
        this one function."""
        if self.gate is None:
            raise ValueError(f"{self.name} has no curve gate")
        history = history or {}
        verdict = self.gate(curves, gate, history, primary)
        if findings:
            verdict = findings.applied(verdict)
        # dead ReLU units are named only as the cause of a failure: on a stage that passed,
        # units silent on the 8 probe samples are as often specialised as dead (a correct
        # tiny_unet's bottom layer reaches 94 % at scale-up), and the curves still show them
        if (cause := likely_cause(verdict, curves, history)) is not None:
            verdict.diagnoses.insert(0, cause)
        verdict.figures.update(speed_figures(curves, gate.max_batch_seconds))  # every stage
        if primary is not None and (figure := primary.from_curves(curves)) is not None:
            verdict.figures["primary_metric"] = figure
        return verdict


PREFLIGHT = Stage(
    "preflight",
    "check",
    "no training: shapes, label range, deterministic reads, split overlap, loss at "
    "init, gradient reach, parameter count, fancy features",
    "every check passes; advice-only findings are warnings",
)
OVERFIT_ONE = Stage(
    "overfit-one",
    "fit",
    "one train sample, every regularizer off; the input is effectively ignored",
    "mean train loss of the last `window` batches <= `train_loss_below` within `steps`",
    aliases=("overfit-1",),
    gate=gate_overfit_one,
    gate_schema=OverfitGate,
    overlay={"samples": 1, "steps": 300},
    plain=True,
)
OVERFIT_FEW = Stage(
    "overfit-few",
    "fit",
    "`samples` train samples in one batch; the output must now depend on the input",
    "train loss <= `train_loss_below` within `steps` and `max_seconds`",
    aliases=("overfit-10",),
    gate=gate_overfit_few,
    gate_schema=OverfitGate,
    overlay={"samples": 10, "steps": 500, "gate": {"max_seconds": 300.0}},
    plain=True,
)
FULL_DATA = Stage(
    "full-data",
    "fit",
    "the whole train set; must generalize for the first time; speed measured",
    "smoothed val loss improves by >= `min_val_improvement`, beats the input-independent "
    "baseline, median batch <= `max_batch_seconds`",
    gate=gate_full_data,
    gate_schema=FullDataGate,
    overlay={"epochs": 3},
    logs_baseline=True,
    shows_worst=True,
)
# augment and scale-up train as long as full-data unless told otherwise, so their gates
# compare like with like; both allow a drop of 0.02 in the primary metric, about the
# noise of a small val set's metric between seeds
AUGMENT = Stage(
    "augment",
    "fit",
    "class weights and train-only augmentation",
    "primary val metric not worse than full-data's by more than `tolerance`",
    gate=gate_augment,
    gate_schema=CompareGate,
    overlay={
        "init_from": "full-data",  # continues from full-data's weights
        "augmentations": "auto",
        "class_weights": "auto",
        "gate": {"tolerance": 0.02},
    },
    length_of="full-data",
)
SCALE_UP = Stage(
    "scale-up",
    "fit",
    "bigger model, dropout/batchnorm/LR decay back on, mixed precision, several GPUs",
    "primary val metric not worse than the best earlier stage by more than `tolerance`",
    gate=gate_scale_up,
    gate_schema=CompareGate,
    overlay={"gate": {"tolerance": 0.02}},
    unconfigured="not configured: set stages.scale-up (a bigger model, dropout/batchnorm/LR "
    "decay back on, precision bf16 on a GPU) to run it",
    length_of="full-data",
)
ADVERSARIAL = Stage(
    "adversarial",
    "adversarial",
    "the L1 generator continued with a Wasserstein critic (gradient penalty)",
    "no NaN/divergence, val L1 within `max_l1_increase` of full-data's, Wasserstein estimate "
    "bounded (critic neither diverging nor collapsed); refused until the L1 stages passed",
    gate=gate_adversarial,
    gate_schema=AdversarialGate,
    overlay={"epochs": 3, "init_from": "full-data"},
    prerequisites=("overfit-one", "overfit-few", "full-data"),
    refused_because="the adversarial stage adds a critic only once the L1 regression works",
    distributed=False,  # the critic is not distributed
)

STAGES: dict[str, Stage] = {
    s.name: s
    for s in (PREFLIGHT, OVERFIT_ONE, OVERFIT_FEW, FULL_DATA, AUGMENT, SCALE_UP, ADVERSARIAL)
}
ALIASES: dict[str, str] = {alias: s.name for s in STAGES.values() for alias in s.aliases}
TRAINING_STAGES: tuple[str, ...] = tuple(n for n, s in STAGES.items() if s.trains)

# The ladders a task climbs (``Task.ladder``), in order.
STANDARD_LADDER: tuple[Stage, ...] = (
    PREFLIGHT,
    OVERFIT_ONE,
    OVERFIT_FEW,
    FULL_DATA,
    AUGMENT,
    SCALE_UP,
)
# "for generative models, always start without a discriminator loss": L1 first, then the D
GENERATIVE_LADDER: tuple[Stage, ...] = (PREFLIGHT, OVERFIT_ONE, OVERFIT_FEW, FULL_DATA, ADVERSARIAL)


def canonical_stage(name: str, key: str = "stage") -> str:
    """Map an alias to its stage name; unknown names are a config error naming ``key``."""
    name = ALIASES.get(name, name)
    if name not in STAGES:
        raise ConfigError(
            f"{key}: unknown stage '{name}'."
            f"{did_you_mean(name, [*STAGES, *ALIASES])} "
            f"Stages: {', '.join(STAGES)}."
        )
    return name


def judge_stage(
    name: str,
    curves: Curves,
    gate: TrainingGate,
    history: Mapping[str, Verdict] | None = None,
    primary: Primary | None = None,
    findings: Findings | None = None,
) -> Verdict:
    """``Stage.judge`` by stage name: the one re-judge of a training stage."""
    return STAGES[canonical_stage(name)].judge(curves, gate, history, primary, findings)
