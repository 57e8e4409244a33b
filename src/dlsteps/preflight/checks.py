"""Preflight: every check that needs no training, run before any stage trains.

Each check returns diagnoses; the stage fails if any has severity ``fail``. What depends
on the task (the target contract, the label range, the loss at init) is the task's
(``Task.batch_problem``, ``check_labels``, ``check_init``). Findings are
written to ``preflight/verdict.json`` so a report can show them without the model.
The checks read a few items twice (determinism), use the one data pass of
``datastats`` (overlap, labels, non-finite values) and run one forward/backward on a
probe batch of up to ``PROBE_BATCH`` train items (shapes, loss at init, probabilities
instead of logits, outputs that ignore the input, gradient reach).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from dlsteps.config import StagePlan
from dlsteps.config.schema import Config
from dlsteps.data.items import NamedItems, shapes_by_index
from dlsteps.data.stats import DataStats
from dlsteps.errors import ModelError
from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.judge.verdict import Verdict, verdict_of
from dlsteps.tasks.base import LabelInfo, ProbeFacts, Task
from dlsteps.train.optim import make_scheduler
from dlsteps.train.watch import first_nonfinite_module

PARAMS_ADVISED = 1_000_000
PROBE_ITEMS = 64  # indices read twice per split: a label random on 10% of reads shows
PROBE_BATCH = 16  # train items in the forward/backward probe
PROBABILITY_PROBES = 3  # probe batches read for outputs that stay inside (0, 1)
IGNORED_SPREAD = 1e-6  # outputs this uniform across distinct inputs: the input is not used
OVERLAP_LOOSE_FAIL = 0.05  # share of val that is train content in other preprocessing
DUPLICATE_NATURAL = 0.01  # train repeating its own inputs this often: shared inputs are natural


def read_item(ds: Dataset, index: int, split: str) -> tuple[Any, Any]:
    x, y = NamedItems(ds, split)[index]
    return x, y


def probe_indices(size: int, count: int = PROBE_ITEMS) -> list[int]:
    """A few indices spread over the data set (first, last and between)."""
    count = min(count, size)
    return sorted({round(i * (size - 1) / max(count - 1, 1)) for i in range(count)})


def check_repeat_reads(train: Dataset, val: Dataset, task: Task) -> list[Diagnosis]:
    """Read the same indices twice: train targets and all of val must not change."""
    found = []
    changed, augmented = [], []
    for i in probe_indices(len(train)):
        (x1, y1), (x2, y2) = _copied(read_item(train, i, "train")), read_item(train, i, "train")
        if _same(y1, y2):
            continue
        # a mask flipped/rotated together with its image keeps its class counts
        joint = task.dense_targets and not _same(x1, x2) and _same_counts(y1, y2)
        (augmented if joint else changed).append(i)
    if changed:
        found.append(
            Diagnosis(
                "nondeterministic_labels",
                f"train items {changed} returned different targets on two reads of the same "
                f"index ({len(changed)} of {len(probe_indices(len(train)))} probed). "
                f"{hint('nondeterministic_labels')}",
            )
        )
    elif augmented:
        found.append(
            Diagnosis(
                "nondeterministic_labels",
                f"train items {augmented} return a different image and mask on each read "
                "(the same class counts, so probably a joint flip/rotation): the data set "
                "augments itself. Fine if the mask follows the image exactly; prefer the "
                "augment stage's augmentations so earlier stages see fixed data.",
                severity="warn",
            )
        )
    bad_val = []
    for i in probe_indices(len(val)):
        (x1, y1), (x2, y2) = _copied(read_item(val, i, "val")), read_item(val, i, "val")
        if not (_same(x1, x2) and _same(y1, y2)):
            bad_val.append(i)
    if bad_val:
        found.append(
            Diagnosis(
                "val_augmented",
                f"val items {bad_val} returned different inputs or targets on two reads of the "
                f"same index ({len(bad_val)} of {len(probe_indices(len(val)))} probed). "
                f"{hint('val_augmented')}",
            )
        )
    return found


def check_overlap(stats: DataStats) -> list[Diagnosis]:
    """Exact shared inputs, then the same content under another dtype or normalisation."""
    exact = stats.overlap()
    exact_val = {v for _, v in exact}
    loose = [(t, v) for t, v in stats.overlap(loose=True) if v not in exact_val]
    if not exact and not loose:
        return []
    natural = stats.train.duplicate_share() > DUPLICATE_NATURAL
    found = []
    if exact:
        found.append(
            Diagnosis(
                "split_overlap",
                f"{len(exact)} of {stats.val.read} val inputs are byte-identical to train inputs "
                f"({_pairs(exact)})"
                + (
                    f"; train also repeats {stats.train.duplicate_share():.0%} of its own "
                    "inputs, so equal inputs may be natural here"
                    if natural
                    else ""
                )
                + f". {hint('split_overlap')}",
                severity="warn" if natural else "fail",
            )
        )
    if loose:
        share = len(loose) / max(stats.val.read, 1)
        natural = stats.train.duplicate_share(loose=True) > DUPLICATE_NATURAL
        found.append(
            Diagnosis(
                "split_overlap",
                f"{len(loose)} of {stats.val.read} val inputs ({share:.1%}) have the same content "
                f"as train inputs up to scale and offset ({_pairs(loose)}): the same images with "
                f"another dtype or normalisation, or near-duplicates. {hint('split_overlap')}",
                severity="fail" if share >= OVERLAP_LOOSE_FAIL and not natural else "warn",
            )
        )
    return found


def check_nonfinite(stats: DataStats) -> list[Diagnosis]:
    found = []
    for split, s in (("train", stats.train), ("val", stats.val)):
        if s.nonfinite:
            found.append(
                Diagnosis(
                    "nan_loss",
                    f"{len(s.nonfinite)} {split} items contain NaN or Inf in the input or target "
                    f"(indices {s.nonfinite[:10]}{', ...' if len(s.nonfinite) > 10 else ''}); "
                    f"the loss becomes NaN as soon as one is in a batch. "
                    "Clean or drop those items, e.g. check torch.isfinite(x).all() per item.",
                )
            )
    return found


def check_constant_inputs(stats: DataStats) -> list[Diagnosis]:
    """Every train input byte-identical: a loader that returns the same input each time."""
    if stats.train.read < 2 or len(set(stats.train.hashes)) > 1:
        return []
    return [
        Diagnosis(
            "input_ignored",
            f"all {stats.train.read} train inputs read are byte-identical: __getitem__ ignores "
            f"its index for the input (or the data is one repeated sample). "
            f"{hint('input_ignored')}",
        )
    ]


def sample_batch(
    ds: Dataset, count: int, offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor] | Diagnosis:
    """``count`` train items spread over the set (shifted by ``offset``) as one batch, or
    the ``shape_mismatch`` that says which items cannot be batched together."""
    indices = [(i + offset) % len(ds) for i in probe_indices(len(ds), count)]
    items = [read_item(ds, i, "train") for i in indices]
    try:
        x, y = default_collate(items)
    except Exception as exc:
        return Diagnosis(
            "shape_mismatch",
            f"train items cannot be batched together ({type(exc).__name__}: {exc}): "
            f"inputs {shapes_by_index(indices, [a for a, _ in items])}; targets "
            f"{shapes_by_index(indices, [b for _, b in items])}. Every item of a batch must "
            "have the same shape: resize or crop in __getitem__ (or a collate_fn that pads). "
            f"{hint('shape_mismatch')}",
        )
    return torch.as_tensor(x), torch.as_tensor(y)


def check_shapes(out: torch.Tensor, y: torch.Tensor, task: Task) -> list[Diagnosis]:
    """The model's output batch against the target batch: the batch dimension first (a
    view that folds samples together), then the task's contract."""
    if out.ndim == 0 or (y.ndim > 0 and out.shape[0] != y.shape[0]):
        problem = (
            f"the model returns {tuple(out.shape)} for a batch of {y.shape[0]} (targets "
            f"{tuple(y.shape)}): its batch dimension is not the input's. Likely a flatten "
            "or view over the wrong size (x.view(-1, N) with N other than the size of one "
            "sample folds samples together; use x.flatten(1)), or a batch_first mix-up"
        )
    elif (problem := task.batch_problem(out, y)) is None:
        return []
    return [
        Diagnosis("shape_mismatch", f"model output vs target: {problem}. {hint('shape_mismatch')}")
    ]


def forward_probe(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    try:
        out = model(x.to(device))
    except ModelError:
        raise  # model.output could not find the prediction: its message says what to set
    except Exception as exc:
        raise ModelError(
            f"the model raised {type(exc).__name__} on a batch of shape {tuple(x.shape)} "
            f"({x.dtype}): {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"the model returned {type(out).__name__}; it must return one tensor")
    return out


def check_batch_of_one(
    model: nn.Module, x: torch.Tensor, out: torch.Tensor, device: torch.device
) -> list[Diagnosis]:
    """The overfit-one stage trains on a batch of 1: the output of one sample must be the
    output of many with a batch of 1 (a ``squeeze()`` drops that dimension). Run in eval
    mode, where batch norm takes a single sample."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            one = model(x[:1].to(device))
    except Exception as exc:
        return [
            Diagnosis(
                "shape_mismatch",
                f"the model takes a batch of {x.shape[0]} but raises {type(exc).__name__} on "
                f"a batch of 1 ({exc}); overfit-one trains on one sample. Look for a view or "
                f"reshape that assumes a batch size. {hint('shape_mismatch')}",
            )
        ]
    finally:
        model.train(was_training)
    expected = (1, *out.shape[1:])
    if not isinstance(one, torch.Tensor) or tuple(one.shape) == expected:
        return []
    return [
        Diagnosis(
            "shape_mismatch",
            f"with a batch of {x.shape[0]} the model returns {tuple(out.shape)}, with a batch "
            f"of 1 {tuple(one.shape)} instead of {expected}: a squeeze() drops the batch "
            "dimension of a batch of 1 (squeeze only the dimension you mean, e.g. "
            f"squeeze(-1)). {hint('shape_mismatch')}",
        )
    ]


# Autograd nodes that only move, copy or resample values: looked through for the last
# real operation of the forward.
_PASS_THROUGH = (
    "View",
    "UnsafeView",
    "ReshapeAlias",
    "Permute",
    "Transpose",
    "TBackward",
    "Clone",
    "ToCopy",
    "Squeeze",
    "Unsqueeze",
    "Expand",
    "Alias",
    "Slice",
    "Select",
    "Upsample",
)
_SQUASHING = {"SigmoidBackward": "a sigmoid", "SoftmaxBackward": "a softmax"}


def final_operation(out: torch.Tensor) -> str | None:
    """``a sigmoid`` or ``a softmax`` when that is the forward's last real operation (a
    module or a functional call alike, read off the output's autograd graph)."""
    fn = out.grad_fn
    while fn is not None:
        name = type(fn).__name__
        if squash := next((v for k, v in _SQUASHING.items() if name.startswith(k)), None):
            return squash
        if not name.startswith(_PASS_THROUGH):
            return None
        inputs = [f for f, _ in fn.next_functions if f is not None]
        if len(inputs) != 1:
            return None
        fn = inputs[0]
    return None


def probe_facts(
    model: nn.Module, train: Dataset, out: torch.Tensor, device: torch.device
) -> ProbeFacts:
    """What a fresh model's outputs say beyond one batch: the forward's last operation,
    and on how many probe batches (of up to three) every output lay inside (0, 1)."""
    unit = 0
    batch = out
    for offset in range(PROBABILITY_PROBES):
        if offset:
            sampled = sample_batch(train, min(PROBE_BATCH, len(train)), offset * 7 + 1)
            if isinstance(sampled, Diagnosis):
                break
            with torch.no_grad():
                batch = model(sampled[0].to(device))
        o = batch.detach().float()
        if not (bool(torch.isfinite(o).all()) and o.min() > 0 and o.max() < 1):
            break
        unit += 1
    return ProbeFacts(final_operation(out), unit)


def check_output_depends_on_input(x: torch.Tensor, out: torch.Tensor) -> list[Diagnosis]:
    """Distinct inputs, (nearly) identical outputs: the forward does not use its input.

    A warning: the ladder's contract is that overfit-one passes without the input and
    overfit-few fails on it; this names the problem before any training."""
    if x.shape[0] < 2:
        return []
    distinct = x.reshape(x.shape[0], -1).double().std(dim=0).max() > 0
    o = out.detach().double()
    if not distinct or not bool(torch.isfinite(o).all()):
        return []
    spread = float(o.std(dim=0).mean() / (o.std() + 1e-12)) if o.std() > 0 else 0.0
    if spread >= IGNORED_SPREAD:
        return []
    return [
        Diagnosis(
            "input_ignored",
            f"a fresh model gives the same output for {x.shape[0]} different train inputs "
            f"(spread across the batch {spread:.1e} of the output's overall variation): "
            "forward() does not use its input, or its signal dies out on the way (a deep "
            "stack without normalisation). overfit-one can pass without the input; "
            f"overfit-few will fail on it. {hint('input_ignored')}",
            severity="warn",
        )
    ]


def check_gradient_reach(model: nn.Module, loss: torch.Tensor) -> list[Diagnosis]:
    """One backward: name the trainable parameters it does not reach."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        frozen = sum(1 for _ in model.parameters())
        return [
            Diagnosis(
                "no_gradient",
                f"the model has no trainable parameters: all {frozen} parameter tensors have "
                "requires_grad=False (a frozen backbone with no head left trainable, or "
                "requires_grad_(False) applied to the whole model). Unfreeze at least the "
                "layers that should learn.",
            )
        ]
    if not loss.requires_grad:
        return [
            Diagnosis(
                "no_gradient",
                f"the loss does not depend on any of the model's {len(trainable)} trainable "
                "parameter tensors (it has no grad_fn): forward() runs under torch.no_grad(), "
                "detaches its output, or goes through numpy/.item(). "
                f"{hint('no_gradient')}",
            )
        ]
    model.zero_grad(set_to_none=True)
    loss.backward()
    unreached = [n for n, p in trainable if p.grad is None]
    zero = [n for n, p in trainable if p.grad is not None and not torch.any(p.grad != 0)]
    model.zero_grad(set_to_none=True)
    found = []
    if unreached:
        found.append(
            Diagnosis(
                "no_gradient",
                f"{len(unreached)} of {len(trainable)} trainable parameter tensors got no "
                f"gradient from one forward/backward: {_names(unreached)}. Those layers are "
                f"unused in forward() or cut off by detach/no_grad/.item(). {hint('no_gradient')}",
            )
        )
    if zero:
        found.append(
            Diagnosis(
                "no_gradient",
                f"{len(zero)} of {len(trainable)} trainable parameter tensors got a gradient of "
                f"exactly zero on {PROBE_BATCH} samples: {_names(zero)}. Their input or output "
                "is multiplied by zero, clamped, rounded or passed through a dead ReLU (on this "
                f"batch). {hint('no_gradient')}",
                severity="warn",
            )
        )
    return found


def check_batch_mixing(model: nn.Module, x: torch.Tensor, device: torch.device) -> list[Diagnosis]:
    """In eval mode sample i's output must not depend on any other sample's input: the
    gradient of ``out[i]`` w.r.t. every other input of the batch is exactly zero. A view
    or reshape that folds the batch into another axis, or a ``batch_first`` mix-up, breaks
    that while training still "works". Names the first module whose output mixes (a
    binary search over the modules' outputs in the order they ran)."""
    if x.shape[0] < 2 or not x.is_floating_point():
        return []
    size = x.shape[0]
    outputs: list[tuple[str, torch.Tensor]] = []

    def record(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, tuple | list) and output:  # an RNN's (output, state)
                output = output[0]
            if isinstance(output, torch.Tensor) and output.requires_grad:
                outputs.append((name, output))

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n]
    was_training = model.training
    model.eval()
    inputs = x.to(device).clone().requires_grad_(True)
    try:
        out = model(inputs)
    except Exception:  # preflight's forward probe already reported a model that cannot run
        return []
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return []

    def mixes(t: torch.Tensor) -> bool:
        """Sample 0's or the last sample's output reaches another sample's input (a
        causal or sequence mix-up can spare one end of the batch)."""
        if t.ndim == 0 or t.shape[0] != size:
            return True  # the batch is no longer the first dimension
        for i in (0, size - 1):
            (grad,) = torch.autograd.grad(
                t[i].float().sum(), inputs, retain_graph=True, allow_unused=True
            )
            others = torch.cat([grad[:i], grad[i + 1 :]]) if grad is not None else None
            if others is not None and bool((others != 0).any()):
                return True
        return False

    if not mixes(out):
        return []
    lo, hi = 0, len(outputs)  # the first module output that mixes lies in [lo, hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if mixes(outputs[mid][1]):
            hi = mid
        else:
            lo = mid + 1
    where = ""
    if lo < len(outputs):
        name, t = outputs[lo]
        kind = type(model.get_submodule(name)).__name__
        shape = tuple(t.shape)
        where = (
            f"; it first appears in the output of module '{name}' ({kind}, shape {shape}"
            + (
                f", whose first dimension is no longer the batch of {size}"
                if shape[:1] != (size,)
                else ""
            )
            + ")"
        )
    return [
        Diagnosis(
            "batch_mixing",
            f"in eval mode a sample's output depends on the inputs of the other {size - 1} "
            f"samples of the batch (its gradient w.r.t. them is not zero){where}. A view or "
            "reshape that folds the batch into another axis (x.view(-1, ...) instead of "
            "x.flatten(1)), a transpose of the batch with another axis, or an RNN with the "
            f"wrong batch_first makes samples leak into each other. {hint('batch_mixing')}",
        )
    ]


def check_unregistered(model: nn.Module) -> list[Diagnosis]:
    """Layers and weights the optimizer never sees: modules held in a plain list, tuple or
    dict (not ``nn.ModuleList``/``ModuleDict``), and tensors with ``requires_grad`` stored
    as plain attributes instead of ``nn.Parameter``."""
    registered = {id(m) for m in model.modules()}
    found = []
    for owner, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr.startswith("_"):
                continue
            where = f"{owner}.{attr}" if owner else attr
            items = value.values() if isinstance(value, dict) else value
            if isinstance(value, list | tuple | dict):
                hidden = [v for v in items if isinstance(v, nn.Module) and id(v) not in registered]
                if hidden:
                    count = sum(sum(p.numel() for p in h.parameters()) for h in hidden)
                    found.append(
                        f"{len(hidden)} layers in the plain {type(value).__name__} '{where}' "
                        f"({count:,} parameters; use nn.ModuleList / nn.ModuleDict)"
                    )
            elif (
                isinstance(value, torch.Tensor)
                and value.requires_grad
                and not isinstance(value, nn.Parameter)
            ):
                found.append(
                    f"the tensor '{where}' {tuple(value.shape)} has requires_grad but is not "
                    "an nn.Parameter (wrap it: nn.Parameter(...))"
                )
    if not found:
        return []
    return [
        Diagnosis(
            "unregistered_parameters",
            f"the optimizer cannot see {'; '.join(found)}: they get gradients but are never "
            f"updated, and are not saved in checkpoints. {hint('unregistered_parameters')}",
        )
    ]


def check_schedules(plans: Sequence[StagePlan], train_size: int) -> list[Diagnosis]:
    """Each training stage's LR schedule, simulated over the stage's own length: a warm-up
    longer than the stage, a decay below 1 % of the peak before half the stage, or an LR
    at zero before the stage ends waste the stage (numbers in the message)."""
    found = []
    for plan in plans:
        cfg, knobs = plan.config, plan.knobs
        steps = knobs.steps or (knobs.epochs or 1) * math.ceil(train_size / cfg.data.batch_size)
        lrs = simulated_lrs(cfg.optim, steps)
        if lrs is None:
            continue
        peak = max(lrs)
        problem = None
        if cfg.optim.warmup_steps >= steps:
            problem = (
                f"its warm-up of {cfg.optim.warmup_steps} steps is longer than the stage's "
                f"{steps} steps: the LR never reaches optim.lr {cfg.optim.lr:g}"
            )
        elif (low := _first_below(lrs, 0.01 * peak)) is not None and low < steps / 2:
            problem = (
                f"its LR falls below 1 % of its peak {peak:.3g} at step {low + 1} of {steps}, "
                "before half the stage: the rest of it barely trains"
            )
        elif (zero := _first_below(lrs, 1e-8 * peak)) is not None and zero < steps - 1:
            problem = f"its LR reaches zero at step {zero + 1} of {steps}, before the stage ends"
        if problem:
            found.append(
                Diagnosis(
                    "schedule_mismatch",
                    f"{plan.stage}'s LR schedule ({_schedule(cfg.optim)}) does not fit the "
                    f"stage: {problem}. {hint('schedule_mismatch')}",
                )
            )
    return found


# A stage's schedule is replayed for at most this many steps (a quarter second): a config
# with steps: 10**12 is checked on its first 50,000, not replayed for days.
MAX_SIMULATED = 50_000


def simulated_lrs(optim: Any, steps: int) -> list[float] | None:
    """The LR of every step of a stage under ``optim``'s schedule (its first
    ``MAX_SIMULATED`` steps), from the very scheduler a stage builds (on a one-parameter
    optimizer); None without a schedule."""
    dummy = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=optim.lr)
    scheduler = make_scheduler(dummy, optim, steps, plain=False)
    if scheduler is None:
        return None
    lrs = []
    for _ in range(min(steps, MAX_SIMULATED)):
        lrs.append(dummy.param_groups[0]["lr"])
        dummy.step()
        scheduler.step()
    return lrs


def _first_below(values: Sequence[float], level: float) -> int | None:
    return next((i for i, v in enumerate(values) if v < level), None)


def _schedule(optim: Any) -> str:
    parts = [optim.scheduler.name]
    if optim.scheduler.args:
        parts.append(", ".join(f"{k} {v}" for k, v in optim.scheduler.args.items()))
    if optim.warmup_steps:
        parts.append(f"warmup_steps {optim.warmup_steps}")
    if optim.scheduler.name == "step":
        parts.append(f"step_size {optim.step_size}, gamma {optim.gamma:g}")
    return ", ".join(parts)


def check_fancy(model: nn.Module, config: Config) -> list[Diagnosis]:
    features = []
    dropout = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
    ]
    norms = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if dropout:
        features.append(f"dropout ({len(dropout)} layers)")
    if norms:
        features.append(f"batchnorm ({len(norms)} layers)")
    if config.optim.scheduler.name != "none":
        features.append(f"LR decay ({config.optim.scheduler.name})")
    if config.optim.weight_decay > 0:
        features.append(f"weight decay {config.optim.weight_decay:g}")
    found = []
    if features:
        found.append(
            Diagnosis(
                "fancy_features",
                f"the starting setup has {', '.join(features)}; the overfit stages turn them off, "
                f"and they complicate reading early curves. {hint('fancy_features')}",
                severity="warn",
            )
        )
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if count > PARAMS_ADVISED:
        found.append(
            Diagnosis(
                "large_model",
                f"the starting model has {count:,} trainable parameters; under 1M is advised "
                f"until full-data passes. {hint('large_model')}",
                severity="warn",
            )
        )
    return found


def run_preflight(
    model: nn.Module,
    loss_fn: nn.Module,
    train: Dataset,
    val: Dataset,
    stats: DataStats,
    config: Config,
    device: torch.device,
    task: Task,
) -> Verdict:
    # a model that cannot take the data at all is the more basic error: probe it first
    sampled = sample_batch(train, min(PROBE_BATCH, len(train)))
    if isinstance(sampled, Diagnosis):
        return verdict_of([sampled], {"train_size": stats.train.size})
    x, y = sampled
    model.train()
    out = forward_probe(model, x, device)
    found: list[Diagnosis] = task.check_data(stats)
    found += check_nonfinite(stats)
    found += check_repeat_reads(train, val, task)
    found += check_overlap(stats)
    found += check_constant_inputs(stats)
    num_outputs = out.shape[1] if out.ndim >= 2 else 1
    shape_problems = check_shapes(out, y, task) or check_batch_of_one(model, x, out, device)
    found += shape_problems
    names = getattr(train, "class_names", None) or getattr(val, "class_names", None)
    info = LabelInfo(getattr(train, "num_classes", None), names)
    found += task.check_labels(stats, num_outputs, info)
    figures: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_size": stats.train.size,
        "val_size": stats.val.size,
        "input_shape": list(x.shape[1:]),
        "output_shape": list(out.shape[1:]),
    }
    found += check_output_depends_on_input(x, out)
    bad_data = any(d.code in exit_code_codes() and d.severity == "fail" for d in found)
    if not shape_problems and not bad_data:
        try:
            loss = loss_fn(out, y.to(device))
        except Exception as exc:
            found.append(
                Diagnosis(
                    "shape_mismatch",
                    f"the loss raised {type(exc).__name__} on model output {tuple(out.shape)} "
                    f"and targets {tuple(y.shape)} ({y.dtype}): {exc}. {hint('shape_mismatch')}",
                )
            )
            return verdict_of(found, figures)
        figures["init_loss"] = float(loss.detach())
        if (expected := task.expected_init_loss(num_outputs)) is not None:
            figures["expected_init_loss"] = expected
        facts = probe_facts(model, train, out, device)
        if not torch.isfinite(loss):
            facts = replace(facts, nonfinite_in=first_nonfinite_module(model, x.to(device)))
        found += task.check_init(float(loss.detach()), out, stats, facts)
        if task.measures_init_loss(num_outputs):  # no closed form: measure the reference
            reference = init_reference(loss_fn, out, y.to(device))
            figures["init_loss_reference"] = reference
            found += task.check_init_reference(float(loss.detach()), reference)
        if torch.isfinite(loss):
            found += check_gradient_reach(model, loss)
        found += check_batch_mixing(model, x, device)
        found += task.check_probe(model, x.to(device), y.to(device), out)
    found += check_unregistered(model)
    found += check_fancy(model, config)
    return verdict_of(found, figures)


def init_reference(loss_fn: nn.Module, out: torch.Tensor, y: torch.Tensor) -> float:
    """The loss of an all-zero output on the probe batch: what a model that says "don't
    know" (every class equally likely, every value 0) gets, for a loss without a formula."""
    with torch.no_grad():
        return float(loss_fn(torch.zeros_like(out), y))


def _same(a: Any, b: Any) -> bool:
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    return ta.shape == tb.shape and ta.dtype == tb.dtype and bool(torch.equal(ta, tb))


def _same_counts(a: Any, b: Any) -> bool:
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    if ta.is_floating_point() or tb.is_floating_point():
        return False
    ua, ca = torch.unique(ta, return_counts=True)
    ub, cb = torch.unique(tb, return_counts=True)
    return bool(torch.equal(ua, ub) and torch.equal(ca, cb))


def _pairs(pairs: list[tuple[int, int]]) -> str:
    shown = ", ".join(f"train {t} = val {v}" for t, v in pairs[:5])
    return shown + (", ..." if len(pairs) > 5 else "")


def _names(names: list[str]) -> str:
    return ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")


def exit_code_codes() -> Sequence[str]:
    """Preflight codes that mean 'bad data or a model that does not fit it': exit 2."""
    return (
        "label_out_of_range",
        "shape_mismatch",
        "labels_ignored",
        "class_missing",
        "constant_tokens",
    )


def _copied(item: tuple[Any, Any]) -> tuple[Any, Any]:
    """A read kept apart from the next one: data that changes on every read (an in-place
    transform on a cached tensor) would otherwise compare equal to itself."""
    return tuple(a.clone() if isinstance(a, torch.Tensor) else copy.deepcopy(a) for a in item)
