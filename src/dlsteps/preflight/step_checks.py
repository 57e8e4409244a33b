"""Preflight for a config's own ``step``: batches of any structure, a loss the user computes.

What needs no knowledge of the task runs as for every config: the data pass's NaN,
overlap and constant-input checks (they walk nested items, ``data.stats``), repeated
reads compared part by part, one step on a probe batch (its loss finite, its gradient
reaching the model: a loss that ignores the model's output is ``no_gradient`` naming the
step), unregistered parameters, fancy features. What needs the task (label range, the
loss at init against its closed form, output against target shapes, outputs that ignore
the input) runs only when the config declares ``task`` and names the batch's parts
(``data.inputs``, ``data.target``); each check left out is listed in the verdict's
``skipped_checks`` with its reason.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from dlsteps.config.schema import Config
from dlsteps.data.batches import batch_size, described, pick, same, to_device
from dlsteps.data.items import NamedItems, collate_of, shapes_by_index
from dlsteps.data.stats import DataStats
from dlsteps.errors import ModelError, UserError
from dlsteps.judge.diagnoses import Diagnosis, hint
from dlsteps.judge.verdict import Verdict, verdict_of
from dlsteps.preflight.checks import (
    PROBE_BATCH,
    check_constant_inputs,
    check_fancy,
    check_gradient_reach,
    check_nonfinite,
    check_output_depends_on_input,
    check_overlap,
    check_shapes,
    check_unregistered,
    exit_code_codes,
    probe_indices,
)
from dlsteps.tasks.base import LabelInfo, Task
from dlsteps.train.user_step import StepFunction

# the task's checks, by the name the verdict lists them under
TASK_CHECKS = (
    "label range (label_out_of_range, class_missing)",
    "loss at init against the task's closed form (unexpected_init_loss)",
    "model output against target shapes (shape_mismatch)",
    "outputs that ignore the input (input_ignored)",
)
BASELINE_CHECK = "input-independent baseline in full-data (worse_than_baseline)"
BATCH_MIXING_CHECK = "samples mixing across the batch (batch_mixing)"


def run_step_preflight(
    model: nn.Module,
    step: StepFunction,
    train: Dataset,
    val: Dataset,
    stats: DataStats,
    config: Config,
    device: torch.device,
    task: Task,
) -> Verdict:
    """Every check that needs no training, for batches the user's step reads."""
    found: list[Diagnosis] = []
    found += check_nonfinite(stats)
    found += check_repeat_reads_nested(train, val, config.data.target)
    found += check_overlap(stats)
    found += check_constant_inputs(stats)
    sampled = _probe_batch(train)
    figures: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_size": stats.train.size,
        "val_size": stats.val.size,
    }
    if isinstance(sampled, Diagnosis):
        return verdict_of([*found, sampled], figures)
    declared = getattr(train, "num_classes", None)
    labels_first = _task_reason(config) is None and declared is not None
    if labels_first:  # before the step: a label out of range would make it raise
        found += task.check_labels(stats, declared, _label_info(train))
        if any(d.code in exit_code_codes() and d.severity == "fail" for d in found):
            return verdict_of(found, figures)
    batch = to_device(sampled, device)
    figures["batch"] = described(batch)
    model.train()
    try:
        loss, outputs = step(model, batch)
    except UserError:
        raise
    except Exception as exc:
        raise ModelError(
            f"step: {step.name} raised {type(exc).__name__} on a probe batch "
            f"{described(batch)}: {exc}"
        ) from exc
    figures["init_loss"] = float(loss.detach())
    skipped: dict[str, str] = {
        BATCH_MIXING_CHECK: "the step decides how a batch reaches the model, so one "
        "sample's input cannot be traced to another's output"
    }
    if not torch.isfinite(loss):
        found.append(
            Diagnosis(
                "nan_loss",
                f"step {step.name} returns a loss of {float(loss)} for a fresh model on a probe "
                f"batch: check the inputs it reads and how it computes the loss. "
                f"{hint('nan_loss')}",
            )
        )
    else:
        found += check_step_gradient(model, loss, step)
    found += _task_checks(
        task, config, stats, batch, loss, outputs, skipped, figures, train, labels_first
    )
    if not config.data.inputs:
        skipped[BASELINE_CHECK] = (
            "the step computes its own loss, which no closed form knows: name the batch's "
            "inputs (data.inputs) to measure it on the model trained with them zeroed"
        )
    figures["skipped_checks"] = skipped
    found += check_unregistered(model)
    found += check_fancy(model, config)
    return verdict_of(found, figures)


def check_step_gradient(
    model: nn.Module, loss: torch.Tensor, step: StepFunction
) -> list[Diagnosis]:
    """The step's loss must reach the model's parameters: a loss computed from the targets
    alone (or from a detached output) trains nothing."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if trainable and not loss.requires_grad:
        return [_ignores_model(step, len(trainable), "it has no grad_fn")]
    if trainable:
        grads = torch.autograd.grad(loss, trainable, retain_graph=True, allow_unused=True)
        if all(g is None for g in grads):
            return [_ignores_model(step, len(trainable), "no parameter gets a gradient")]
    return [
        Diagnosis(d.code, f"through step {step.name}: {d.message}", d.severity, d.step)
        for d in check_gradient_reach(model, loss)
    ]


def _ignores_model(step: StepFunction, count: int, why: str) -> Diagnosis:
    return Diagnosis(
        "no_gradient",
        f"the loss returned by step {step.name} does not depend on any of the model's "
        f"{count} trainable parameter tensors ({why}): it ignores the model's output. Compute "
        "the loss from what model(...) returns, without .detach(), .item() or torch.no_grad(). "
        f"{hint('no_gradient')}",
    )


def check_repeat_reads_nested(train: Dataset, val: Dataset, target: str | None) -> list[Diagnosis]:
    """Read the same indices twice, part by part: the train target (``data.target``) must
    not change, and no part of a val item may. A train item whose other parts change is
    augmentation as far as can be told; without a named target a changing train item is
    a warning (it may be a label)."""
    found = []
    changed_target, changed = [], []
    for i in probe_indices(len(train)):
        first = copy.deepcopy(NamedItems(train, "train", pairs=False)[i])
        second = NamedItems(train, "train", pairs=False)[i]
        if target is not None:
            if not same(_part(first, target), _part(second, target)):
                changed_target.append(i)
        elif not same(first, second):
            changed.append(i)
    probed = len(probe_indices(len(train)))
    if changed_target:
        found.append(
            Diagnosis(
                "nondeterministic_labels",
                f"train items {changed_target} returned a different target ('{target}') on two "
                f"reads of the same index ({len(changed_target)} of {probed} probed). "
                f"{hint('nondeterministic_labels')}",
            )
        )
    if changed:
        found.append(
            Diagnosis(
                "nondeterministic_labels",
                f"train items {changed} differ between two reads of the same index "
                f"({len(changed)} of {probed} probed): augmentation, or a target that changes. "
                "Name the target (data.target) so dlsteps can tell them apart.",
                severity="warn",
            )
        )
    bad_val = []
    for i in probe_indices(len(val)):
        first = copy.deepcopy(NamedItems(val, "val", pairs=False)[i])
        if not same(first, NamedItems(val, "val", pairs=False)[i]):
            bad_val.append(i)
    if bad_val:
        found.append(
            Diagnosis(
                "val_augmented",
                f"val items {bad_val} returned different contents on two reads of the same "
                f"index ({len(bad_val)} of {len(probe_indices(len(val)))} probed). "
                f"{hint('val_augmented')}",
            )
        )
    return found


def _part(item: Any, key: str) -> Any:
    try:
        return pick(item, key)
    except (KeyError, IndexError, TypeError) as exc:
        raise UserError(
            f"data.target: '{key}' is not a part of the items ({type(item).__name__})",
            code="config_error",
        ) from exc


def _task_reason(config: Config) -> str | None:
    """Why the task's checks cannot run on this config's batches (None: they can)."""
    if not config.declares_task:
        return (
            "no task in the config: with a step of your own (`step:` or a "
            "LightningModule), declare `task:` to run it"
        )
    if config.data.target is None or not config.data.inputs:
        return "the batch's parts are not named: set data.inputs and data.target"
    return None


def _label_info(train: Dataset) -> LabelInfo:
    return LabelInfo(getattr(train, "num_classes", None), getattr(train, "class_names", None))


def _probe_batch(train: Dataset) -> Any:
    """Up to ``PROBE_BATCH`` train items spread over the set, collated as training will
    (the data set's ``collate_fn`` if it has one), or the ``shape_mismatch`` that says
    which items do not fit together."""
    indices = probe_indices(len(train), min(PROBE_BATCH, len(train)))
    items = [NamedItems(train, "train", pairs=False)[i] for i in indices]
    collate = collate_of(train) or default_collate
    try:
        return collate(items)
    except Exception as exc:
        return Diagnosis(
            "shape_mismatch",
            f"train items cannot be batched together ({type(exc).__name__}: {exc}): "
            f"{shapes_by_index(indices, items)}. Give the data set a collate_fn that pads, or "
            f"make every item the same shape. {hint('shape_mismatch')}",
        )


def _task_checks(
    task: Task,
    config: Config,
    stats: DataStats,
    batch: Any,
    loss: torch.Tensor,
    outputs: Any,
    skipped: dict[str, str],
    figures: dict[str, Any],
    train: Dataset,
    labels_checked: bool,
) -> list[Diagnosis]:
    """The task's checks on the step's outputs and the named target, where the config
    makes them possible; the others go to ``skipped`` with the reason."""
    data = config.data
    reason = _task_reason(config)
    if reason is None and not isinstance(outputs, torch.Tensor):
        reason = "the step returns no outputs tensor: return (loss, outputs) to run it"
    if reason is not None:
        skipped.update(dict.fromkeys(TASK_CHECKS, reason))
        return []
    assert data.target is not None and data.inputs
    y = pick(batch, data.target)
    x = pick(batch, data.inputs[0])
    num_outputs = outputs.shape[1] if outputs.ndim >= 2 else 1
    found = check_shapes(outputs, y, task)
    if not labels_checked:
        found += task.check_labels(stats, num_outputs, _label_info(train))
    if (expected := task.expected_init_loss(num_outputs)) is not None:
        figures["expected_init_loss"] = expected
    found += task.check_init(float(loss.detach()), outputs, stats)
    if isinstance(x, torch.Tensor) and x.is_floating_point() and batch_size(batch) > 1:
        found += check_output_depends_on_input(x, outputs)
    else:
        skipped[TASK_CHECKS[3]] = f"input '{data.inputs[0]}' is not a float tensor"
    return found
