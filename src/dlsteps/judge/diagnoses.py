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
    "still_improving": CodeInfo(
        "the train loss was still falling when the stage's steps ran out",
        "a stage too short for this model and data, a learning rate on the low side, a "
        "harder target than the threshold assumes",
        "raise the stage's steps to what the message computes (or the learning rate 2-3x); "
        "the loop itself is fine",
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
    "near_chance": CodeInfo(
        "the primary val metric is barely better than a predictor that ignores the input",
        "labels only weakly tied to the inputs (noisy or shuffled labels), too few steps, a "
        "val set so small that the metric cannot tell, a model that learned only the class "
        "frequencies",
        "look at the val predictions (samples.png in the report) and the confusion matrix; "
        "train longer, or check that labels belong to their inputs",
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
    "labels_ignored": CodeInfo(
        "most targets (or all but one class) equal data.ignore_index",
        "a binary mask saved as 0/255 with the default ignore_index 255, a palette mask read "
        "as raw values, a void class that covers most of the image",
        "map the mask values to classes in the data source (segmentation_folder's "
        "mask_values, e.g. {0: 0, 255: 1}), or set data.ignore_index to a value the masks "
        "do not use",
    ),
    "class_missing": CodeInfo(
        "a class never appears in train, or appears in only one of the splits",
        "num_classes larger than the data's classes, a label mapping that differs between "
        "splits, a split that is not stratified, a filter that dropped a class",
        "count the labels per split (data_stats.json in the run directory) and fix the "
        "mapping or the split; set the model's num_classes to the classes that exist",
    ),
    "extra_outputs": CodeInfo(
        "the model has more outputs than the data has classes",
        "a head left at a library default (1000 ImageNet classes), num_classes from "
        "another data set, labels that are fewer than the data set declares",
        "build the model with num_classes equal to the data's classes (dlsteps fills "
        "num_classes from the data when the model function declares it)",
    ),
    "weight_decay_too_large": CodeInfo(
        "weight decay shrinks the weights faster than the loss can pull them",
        "a weight decay meant for AdamW's decoupled decay given to Adam or SGD, a value "
        "10-100x too large, a long stage at a high learning rate",
        "lower optim.weight_decay until the sum of lr x weight_decay over the stage is well "
        "below 1 (1e-4 to 1e-2 is usual), or set it to 0 until full-data passes",
    ),
    "data_error": CodeInfo(
        "the user's data code raised inside a stage (the split and index are named)",
        "a file that cannot be read or decoded, a __getitem__ that fails on some items, a "
        "data set that changed on disk during the run",
        "read that item by hand (dataset[i]) and fix or drop it; set data.num_workers: 0 "
        "to see the error in the main process",
    ),
    "model_error": CodeInfo(
        "the user's model (or the loss on its output) raised inside a stage",
        "a view or reshape that assumes one batch size, an input of a shape the model was "
        "not built for, an in-place operation autograd needs undone, a device mismatch",
        "run the named module on the named batch shapes by hand; --debug shows the traceback",
    ),
    "config_error": CodeInfo(
        "a config value that only a running stage could reject",
        "class weights of the wrong length, a stage that needs another stage's checkpoint",
        "fix the key the message names and run the stage again",
    ),
    "out_of_memory": CodeInfo(
        "an allocation was refused inside a step; the message names the batch size that fits",
        "a batch (or model, or input size) too large for the GPU or the memory limit, "
        "activations kept alive across steps, a memory limit (ulimit -v, a container) below "
        "what the step needs",
        "set data.batch_size to the size named (it was found by halving the batch until a "
        "forward and backward pass ran), or shrink the model or the inputs",
    ),
    "storage_error": CodeInfo(
        "the run directory could not be written: a full disk, a quota, a read-only folder",
        "a disk filled by checkpoints or other jobs, a quota reached, a folder mounted "
        "read-only or owned by another user",
        "free space (or make the folder writable) and continue with dlsteps run --resume "
        "RUN_DIR: every file is whole and the stage continues after its last checkpoint",
    ),
    "run_locked": CodeInfo(
        "another process is writing this run directory (its run.lock names the PID and host)",
        "a second --resume of a run still going, a resume of a trial an ablation worker is "
        "training, a process on another machine sharing the folder",
        "wait for that process to end; if it is gone (another machine, or a damaged lock), "
        "delete RUN_DIR/run.lock. A lock whose process died on this host is taken over by "
        "--resume",
    ),
    "internal_error": CodeInfo(
        "dlsteps itself failed (not the user's code); the traceback was printed",
        "a bug in dlsteps",
        "rerun with --debug and report the traceback",
    ),
    "batch_mixing": CodeInfo(
        "a sample's output depends on other samples of the batch",
        "a view or reshape that folds the batch into another axis, a transpose of the batch "
        "with a feature axis, an RNN or transformer layer with the wrong batch_first",
        "keep the batch dimension first in every view (x.flatten(1), x.reshape(x.shape[0], "
        "-1)); check batch_first on every recurrent and attention layer",
    ),
    "unregistered_parameters": CodeInfo(
        "layers or weights the optimizer cannot see",
        "layers kept in a plain Python list or dict, a tensor made with requires_grad=True "
        "stored as an attribute instead of nn.Parameter",
        "use nn.ModuleList / nn.ModuleDict for lists of layers and nn.Parameter for weights",
    ),
    "schedule_mismatch": CodeInfo(
        "the learning-rate schedule does not fit the stage's length",
        "a warm-up or decay step size set for a longer run, a schedule horizon (T_max) from "
        "another config, epochs changed without the schedule",
        "set warmup_steps well below the stage's steps and step_size (or T_max) from the "
        "stage's length",
    ),
    "bad_update": CodeInfo(
        "the first optimizer step missed parameters that had gradients (or changed frozen ones)",
        "a layer created inside forward() after the optimizer was built, a parameter group "
        "with learning rate 0, a forward that writes to its own frozen weights",
        "create every layer in __init__; check optimizer.param_groups against model.parameters()",
    ),
    "dead_units": CodeInfo(
        "nearly all units of a ReLU layer output 0 for every input",
        "a bias initialised far negative, a learning rate that knocked the layer dead, "
        "inputs far off their expected scale",
        "initialise biases at 0, lower the learning rate, normalise the inputs; LeakyReLU "
        "or GELU keep a gradient where ReLU has none",
    ),
    "unshifted_targets": CodeInfo(
        "a language model's targets equal its inputs: the labels are not shifted by one",
        "x and y cut from the same slice of the token stream (y = tokens[i:i+T] instead of "
        "tokens[i+1:i+T+1]); a collate that returns the input twice",
        "cut x = tokens[i : i + T] and y = tokens[i + 1 : i + T + 1]",
    ),
    "future_leak": CodeInfo(
        "a language model's prediction at position t depends on tokens after t",
        "attention without its causal mask (is_causal=False, a missing triangular mask), a "
        "bidirectional layer, a convolution that is not left-padded",
        "pass is_causal=True (or a lower-triangular attn_mask) to every self-attention layer",
    ),
    "constant_tokens": CodeInfo(
        "every train token is the same id",
        "a tokenizer that maps all text to one id (an unknown-token fallback for every "
        "character, a vocabulary built from other text), an empty or binary corpus",
        "decode a few train blocks by hand and compare them with the text",
    ),
    "step_error": CodeInfo(
        "the config's own step (or a LightningModule's training_step) returned no usable loss",
        "a step that forgets to return the loss (None), returns a float or a dict without "
        "'loss', or a loss of many values (not reduced)",
        "return the loss as a one-value tensor, or (loss, outputs); reduce it with .mean()",
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
    "labels_ignored": "preflight (label counts: fails when all but one class is ignored, "
    "warns above half of the targets)",
    "class_missing": "preflight (label counts: fails when train holds one class, warns "
    "otherwise and when the splits' classes differ)",
    "extra_outputs": "preflight (warning: model outputs against the labels seen)",
    "shape_mismatch": "preflight (one forward on a probe batch)",
    "unexpected_init_loss": "preflight (loss and outputs of a fresh model)",
    "no_gradient": "preflight (one backward); training stages (gradient norm exactly 0)",
    "input_ignored": "preflight (identical train inputs; identical outputs for different "
    "inputs is a warning there); overfit-few and full-data (output spread of the val batch)",
    "nan_loss": "preflight (NaN/Inf in the data, or at init); any training stage (step given)",
    "fancy_features": "preflight (warning)",
    "bad_update": "the first step of every training stage (optimizer hooks)",
    "dead_units": "any training stage (health/dead/<layer> at flushes), as the cause of a failure",
    "batch_mixing": "preflight (gradient of one sample's output w.r.t. the other inputs)",
    "unregistered_parameters": "preflight (the model's attributes)",
    "schedule_mismatch": "preflight (each training stage's LR schedule, simulated)",
    "large_model": "preflight (warning)",
    "diverging": "any training stage",
    "exploding_gradient": "any training stage",
    "vanishing_gradient": "any training stage",
    "loss_not_decreasing": "overfit-one, overfit-few",
    "loss_plateau": "overfit-one, overfit-few",
    "still_improving": "overfit-one, overfit-few (the last window's slope against its noise)",
    "no_generalization": "full-data",
    "worse_than_baseline": "full-data",
    "overfitting": "full-data (warning)",
    "near_chance": "full-data (warning: stage-end primary metric against the baseline's)",
    "data_bound": "full-data (a warning unless the wait is >= 50 ms or batches are slow)",
    "slow_batch": "full-data (median batch); overfit stages (wall-time budget)",
    "critic_diverging": "adversarial (non-finite critic values, or gan/wasserstein above "
    "max_wasserstein_ratio x gan/distance)",
    "critic_collapse": "adversarial (gan/wasserstein below min_wasserstein_ratio x "
    "gan/distance over the second half)",
    "adversarial_hurts": "adversarial (stage-end val L1 vs the L1-only generator's)",
    "prerequisite_not_passed": "adversarial (before it trains: the L1 stages' verdicts)",
    "data_error": "any stage (a stage error: exit 2, the split and index named)",
    "weight_decay_too_large": "any training stage with weight decay on, as the cause of a "
    "failure (sum of lr x weight_decay over the stage)",
    "model_error": "any training stage (a stage error: exit 2, the step and module named)",
    "out_of_memory": "any training stage (a stage error: exit 2, the batch size that fits)",
    "storage_error": "any stage (a stage error: exit 2; --resume continues)",
    "run_locked": "the start of a run or a --resume (exit 2, before anything is written)",
    "step_error": "preflight (one call of the step on a probe batch: exit 2)",
    "unshifted_targets": "preflight, language_model (targets equal to the inputs at >= 90 % "
    "of a probe batch's positions)",
    "future_leak": "preflight, language_model (the tokens after the middle position changed: "
    "the predictions before it must not move)",
    "constant_tokens": "preflight, language_model (the data pass: one distinct train token; "
    "exit 2)",
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
