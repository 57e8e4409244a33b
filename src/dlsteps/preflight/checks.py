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

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from dlsteps.config.schema import Config
from dlsteps.data.items import NamedItems
from dlsteps.data.stats import DataStats
from dlsteps.errors import DataError, ModelError
from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.judge.verdict import Verdict, verdict_of
from dlsteps.tasks.base import Task

PARAMS_ADVISED = 1_000_000
PROBE_ITEMS = 64  # indices read twice per split: a label random on 10% of reads shows
PROBE_BATCH = 16  # train items in the forward/backward probe
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
        (x1, y1), (x2, y2) = read_item(train, i, "train"), read_item(train, i, "train")
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
        (x1, y1), (x2, y2) = read_item(val, i, "val"), read_item(val, i, "val")
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


def sample_batch(ds: Dataset, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    items = [read_item(ds, i, "train") for i in probe_indices(len(ds), count)]
    try:
        x, y = default_collate(items)
    except Exception as exc:
        shapes = [tuple(torch.as_tensor(a).shape) for a, _ in items]
        raise DataError(
            f"train items cannot be batched together (input shapes {shapes}): {exc}"
        ) from exc
    return torch.as_tensor(x), torch.as_tensor(y)


def check_shapes(out: torch.Tensor, y: torch.Tensor, task: Task) -> list[Diagnosis]:
    """The model's output batch against the target batch, by the task's contract."""
    if (problem := task.batch_problem(out, y)) is None:
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
    x, y = sample_batch(train, min(PROBE_BATCH, len(train)))
    model.train()
    out = forward_probe(model, x, device)
    found: list[Diagnosis] = []
    found += check_nonfinite(stats)
    found += check_repeat_reads(train, val, task)
    found += check_overlap(stats)
    found += check_constant_inputs(stats)
    num_outputs = out.shape[1] if out.ndim >= 2 else 1
    shape_problems = check_shapes(out, y, task)
    found += shape_problems
    names = getattr(train, "class_names", None) or getattr(val, "class_names", None)
    found += task.check_labels(stats, num_outputs, class_names=names)
    figures: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_size": stats.train.size,
        "val_size": stats.val.size,
        "input_shape": list(x.shape[1:]),
        "output_shape": list(out.shape[1:]),
    }
    found += check_output_depends_on_input(x, out)
    if not shape_problems and not any(d.code == "label_out_of_range" for d in found):
        loss = loss_fn(out, y.to(device))
        figures["init_loss"] = float(loss.detach())
        if (expected := task.expected_init_loss(num_outputs)) is not None:
            figures["expected_init_loss"] = expected
        found += task.check_init(float(loss.detach()), out, stats)
        if task.measures_init_loss(num_outputs):  # no closed form: measure the reference
            reference = init_reference(loss_fn, out, y.to(device))
            figures["init_loss_reference"] = reference
            found += task.check_init_reference(float(loss.detach()), reference)
        if torch.isfinite(loss):
            found += check_gradient_reach(model, loss)
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
    return ("label_out_of_range", "shape_mismatch")
