"""Diagnosis codes (a contract) and the shape every finding takes.

A ``Diagnosis`` says what was seen (numbers), at which step, and what to look at. The
catalog below holds, per code, the likely causes and the first thing to try; it is what
``dlsteps explain CODE`` prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["fail", "warn"]


@dataclass(frozen=True)
class Diagnosis:
    code: str
    message: str
    severity: Severity = "fail"
    step: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: out[k] for k in ("code", "severity", "step", "message")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Diagnosis:
        return cls(data["code"], data["message"], data.get("severity", "fail"), data.get("step"))


@dataclass(frozen=True)
class CodeInfo:
    title: str
    causes: str
    first_try: str


CATALOG: dict[str, CodeInfo] = {
    "nan_loss": CodeInfo(
        "the loss became NaN or infinite",
        "learning rate far too high; log/sqrt/division of zero or a negative number in the "
        "loss or model; fp16 overflow; NaN or Inf already in the data",
        "lower the learning rate 10x; check inputs with torch.isfinite; compute the loss from "
        "logits (cross_entropy) instead of log(softmax)",
    ),
    "diverging": CodeInfo(
        "the train loss rose far above where it started",
        "learning rate too high; wrong sign in the loss; a loss that is unbounded below or "
        "above; labels that change between reads",
        "lower the learning rate 10x and re-run overfit-one",
    ),
    "loss_not_decreasing": CodeInfo(
        "the train loss did not go down at all",
        "optimizer not stepping the model's parameters (frozen or detached layers, a new "
        "model built after the optimizer), learning rate far too low, targets that do not "
        "match the inputs (shuffled labels), a loss that ignores the output",
        "check that optimizer.param_groups hold model.parameters() and that gradients are "
        "non-zero; raise the learning rate 10x",
    ),
    "loss_plateau": CodeInfo(
        "the train loss went down but stalled above the gate's threshold",
        "learning rate too high to settle or too low to finish in time; a model too small; "
        "regularization still on; labels inconsistent between reads",
        "give the stage more steps or try lr x3 and lr /3; look at whether the plateau "
        "value equals a constant predictor's loss",
    ),
    "no_gradient": CodeInfo(
        "some trainable parameters receive no gradient",
        "layers defined but unused in forward, .detach()/.item()/numpy() inside forward, "
        "torch.no_grad around part of the model, integer casts",
        "search forward() for detach/no_grad/item; delete or freeze unused layers",
    ),
    "exploding_gradient": CodeInfo(
        "the gradient norm grew far beyond a sane range",
        "learning rate too high, missing normalisation of inputs, a loss summed instead of "
        "averaged over a large batch or image",
        "normalise inputs to about zero mean and unit variance, lower the learning rate, or "
        "set optim.grad_clip",
    ),
    "vanishing_gradient": CodeInfo(
        "the gradient norm is near zero while the loss is still high",
        "saturated activations (sigmoid/tanh), dead ReLUs after a bad init, a loss computed "
        "on probabilities that are already clamped, outputs multiplied by zero",
        "use ReLU/GELU with default init, compute the loss from logits, check that the "
        "output layer is not zeroed",
    ),
    "input_ignored": CodeInfo(
        "the output does not depend on the input",
        "the model's input is overwritten, zeroed or multiplied by a mask of zeros; the "
        "forward uses a constant or a stored tensor instead of x; the data loader returns the "
        "same input for every index; a model that only learned the label frequencies",
        "feed two different inputs and compare the outputs; print x.std() inside forward",
    ),
    "no_generalization": CodeInfo(
        "on the full data the val loss never improved",
        "train and val come from different distributions (different normalisation or "
        "label mapping), labels shuffled against inputs, a learning rate that only "
        "memorises, too little data",
        "compare the preprocessing of train and val side by side and plot a few val "
        "samples with their labels",
    ),
    "worse_than_baseline": CodeInfo(
        "the model is no better on val than a predictor that ignores the input",
        "labels not aligned with inputs (shuffled or shifted masks), a class mapping that "
        "differs between train and val, too few steps",
        "plot a few train inputs with their targets overlaid; check that masks line up",
    ),
    "overfitting": CodeInfo(
        "train loss keeps falling while val loss rises",
        "the model memorises a train set that is too small for it",
        "go on to the augment stage (augmentation, class weights) or use a smaller model",
    ),
    "unexpected_init_loss": CodeInfo(
        "the loss at initialisation is far from its expected value",
        "softmax or sigmoid applied before cross-entropy, which expects logits (the loss then "
        "starts near ln C but cannot go below ln(e + C - 1) - 1); unnormalised inputs or a "
        "badly scaled last layer (logits far too large); for regression, outputs far larger "
        "than the targets",
        "return raw logits from the model; for C classes the loss at init should be near ln C; "
        "normalise inputs to about zero mean and unit variance",
    ),
    "nondeterministic_labels": CodeInfo(
        "the same train index gave different targets on two reads",
        "random labels or random crops applied to the input but not to the mask; a "
        "__getitem__ that draws a random sample instead of reading index i",
        "make __getitem__(i) a pure function of i (for the target); apply geometric "
        "augmentation jointly to input and mask",
    ),
    "val_augmented": CodeInfo(
        "the same val index gave different inputs on two reads",
        "random augmentation applied to the val set",
        "never augment val: build the val set without random transforms",
    ),
    "split_overlap": CodeInfo(
        "train and val share samples",
        "val carved out of train after duplication, a split by file name across augmented "
        "copies, the same list used twice",
        "split by a stable id before any augmentation; deduplicate",
    ),
    "label_out_of_range": CodeInfo(
        "a label lies outside [0, C)",
        "1-based labels, a class count off by one, an unmapped 'void' value (e.g. 255) "
        "without data.ignore_index",
        "remap labels to 0..C-1, set the model's num_classes, or set data.ignore_index",
    ),
    "shape_mismatch": CodeInfo(
        "the model's output does not fit the targets or the data's shape",
        "wrong number of output channels, a missing upsampling, channels-last input, a "
        "target with an extra dimension",
        "print model(x).shape and y.shape for one batch",
    ),
    "data_bound": CodeInfo(
        "waiting for data takes more than half of each step",
        "slow decoding or augmentation in __getitem__, num_workers 0, data on slow storage",
        "raise data.num_workers, cache decoded data, move augmentation to the GPU",
    ),
    "slow_batch": CodeInfo(
        "the median batch takes longer than max_batch_seconds",
        "a model or images too large for the device, data loading (see data_bound)",
        "use smaller images or a smaller model while debugging; on GPU enable bf16",
    ),
    "augment_hurts": CodeInfo(
        "the val metric fell after augmentation",
        "augmentations too strong or not label-preserving, geometry applied to the image "
        "but not to the mask, class weights too extreme",
        "drop augmentations one at a time; check image and mask alignment",
    ),
    "scale_up_hurts": CodeInfo(
        "the val metric fell after scaling up",
        "the bigger model needs more steps or a lower learning rate; batchnorm with tiny "
        "batches; too much dropout",
        "train longer or lower the learning rate; compare with warm-up on",
    ),
    "large_model": CodeInfo(
        "the starting model has more than 1M parameters",
        "a production-size architecture used for debugging the pipeline",
        "start with a model under 1M parameters (tiny_unet, resnet18_stem with blocks: 1-2); "
        "scale up once full-data passes",
    ),
    "fancy_features": CodeInfo(
        "dropout, batchnorm, LR decay or weight decay in a starting stage",
        "features that add a few points at the end but make early curves hard to read",
        "turn them off until full-data passes; scale-up turns them back on",
    ),
    "class_missing": CodeInfo(
        "a class that one split has is missing from the other",
        "a small or unstratified val split, a class folder present in train/ but not in val/ "
        "(or the other way), a split by file name that puts a whole class on one side",
        "move some items of the class into the split that lacks it (dlsteps keeps one class "
        "map for both splits either way)",
    ),
    "critic_diverging": CodeInfo(
        "the adversarial stage's Wasserstein estimate grew without bound or became NaN",
        "critic learning rate too high, gradient penalty off or too weak (adversarial."
        "gp_weight), batchnorm in the critic (it breaks the per-sample penalty), inputs "
        "and targets on very different scales",
        "lower adversarial.critic_lr 10x and keep adversarial.gp_weight at 10; use a critic "
        "without batchnorm",
    ),
    "critic_collapse": CodeInfo(
        "the adversarial stage's critic stopped telling real from generated images",
        "a critic too small or with dead units (its output is constant), a critic learning "
        "rate far too low, a critic that does not see the image (only the input)",
        "check that the critic's score changes between a real and a generated image; raise "
        "adversarial.critic_lr or adversarial.critic_steps",
    ),
    "adversarial_hurts": CodeInfo(
        "the val L1 rose after the critic was added, beyond the allowed tolerance",
        "the adversarial term outweighs L1 (adversarial.l1_weight too low), a generator "
        "learning rate too high for fine-tuning, a critic that is too strong",
        "raise adversarial.l1_weight, lower optim.lr for the adversarial stage, or reduce "
        "adversarial.critic_steps",
    ),
    "prerequisite_not_passed": CodeInfo(
        "a stage was refused because the stages it builds on have not passed",
        "the adversarial stage run alone, or after an L1 stage (overfit-one, overfit-few, "
        "full-data) failed: a critic cannot fix a generator whose L1 regression does not work",
        "run the ladder from the start (dlsteps run CONFIG) and make the L1 stages pass first",
    ),
}


# Where each code of the ladder's own rules is first seen (the earliest stage that can).
CAUGHT_AT: dict[str, str] = {
    "nondeterministic_labels": "preflight (a train index read twice)",
    "val_augmented": "preflight (a val index read twice)",
    "split_overlap": "preflight (content hashes of every input)",
    "label_out_of_range": "preflight (label counts of every target)",
    "shape_mismatch": "preflight (one forward on a probe batch)",
    "unexpected_init_loss": "preflight (loss and outputs of a fresh model)",
    "no_gradient": "preflight (one backward); training stages (gradient norm exactly 0)",
    "input_ignored": "preflight (identical train inputs; identical outputs for different "
    "inputs is a warning there); overfit-few and full-data (output spread of the val batch)",
    "nan_loss": "preflight (NaN/Inf in the data, or at init); any training stage (step given)",
    "fancy_features": "preflight (warning)",
    "class_missing": "preflight (warning: label counts of every target, per split)",
    "large_model": "preflight (warning)",
    "diverging": "any training stage",
    "exploding_gradient": "any training stage",
    "vanishing_gradient": "any training stage",
    "loss_not_decreasing": "overfit-one, overfit-few",
    "loss_plateau": "overfit-one, overfit-few",
    "no_generalization": "full-data",
    "worse_than_baseline": "full-data",
    "overfitting": "full-data (warning)",
    "data_bound": "full-data (a warning unless the wait is >= 50 ms or batches are slow)",
    "slow_batch": "full-data (median batch); overfit stages (wall-time budget)",
    "critic_diverging": "adversarial (non-finite critic values, or gan/wasserstein above "
    "max_wasserstein_ratio x gan/distance)",
    "critic_collapse": "adversarial (gan/wasserstein below min_wasserstein_ratio x "
    "gan/distance over the second half)",
    "adversarial_hurts": "adversarial (stage-end val L1 vs the L1-only generator's)",
    "prerequisite_not_passed": "adversarial (before it trains: the L1 stages' verdicts)",
}


def explain(code: str) -> str:
    info = CATALOG[code]
    where = f"\n\nCaught at: {CAUGHT_AT[code]}." if code in CAUGHT_AT else ""
    return (
        f"{code}: {info.title}.\n\nLikely causes: {info.causes}.\n\n"
        f"First thing to try: {info.first_try}.{where}"
    )


def hint(code: str) -> str:
    """The short 'what to try' appended to a diagnosis message."""
    return f"Try: {CATALOG[code].first_try}."
