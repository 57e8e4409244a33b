"""Preflight: every check that needs no training, run before any stage trains.

Each check returns diagnoses; the stage fails if any has severity ``fail``. Findings are
written to ``preflight/verdict.json`` so a report can show them without the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from dlsteps.config import Config
from dlsteps.datastats import DataStats
from dlsteps.diagnoses import Diagnosis, hint
from dlsteps.errors import DataError, ModelError
from dlsteps.gates import Verdict
from dlsteps.losses import expected_init_loss

PARAMS_ADVISED = 1_000_000
INIT_LOSS_TOLERANCE = 0.5  # relative: |loss - ln C| / ln C
PROBE_ITEMS = 8


def read_item(ds: Dataset, index: int, split: str) -> tuple[Any, Any]:
    try:
        item = ds[index]
    except Exception as exc:
        raise DataError(
            f"{split} item {index}: __getitem__ raised {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(item, tuple | list) and len(item) == 2):
        raise DataError(
            f"{split} item {index}: expected an (input, target) pair, got {type(item).__name__}"
        )
    return item[0], item[1]


def probe_indices(size: int) -> list[int]:
    """A few indices spread over the data set (first, last and between)."""
    count = min(PROBE_ITEMS, size)
    return sorted({round(i * (size - 1) / max(count - 1, 1)) for i in range(count)})


def check_repeat_reads(train: Dataset, val: Dataset) -> list[Diagnosis]:
    found = []
    bad_train = [
        i
        for i in probe_indices(len(train))
        if not _same(read_item(train, i, "train")[1], read_item(train, i, "train")[1])
    ]
    if bad_train:
        found.append(
            Diagnosis(
                "nondeterministic_labels",
                f"train items {bad_train} returned different targets on two reads of the same "
                f"index. {hint('nondeterministic_labels')}",
            )
        )
    bad_val = [
        i
        for i in probe_indices(len(val))
        if not _same(read_item(val, i, "val")[0], read_item(val, i, "val")[0])
        or not _same(read_item(val, i, "val")[1], read_item(val, i, "val")[1])
    ]
    if bad_val:
        found.append(
            Diagnosis(
                "val_augmented",
                f"val items {bad_val} returned different inputs or targets on two reads of the "
                f"same index. {hint('val_augmented')}",
            )
        )
    return found


def check_overlap(stats: DataStats) -> list[Diagnosis]:
    pairs = stats.overlap()
    if not pairs:
        return []
    shown = ", ".join(f"train {t} = val {v}" for t, v in pairs[:5])
    return [
        Diagnosis(
            "split_overlap",
            f"{len(pairs)} of {stats.val.read} val inputs also appear in train ({shown}"
            f"{', ...' if len(pairs) > 5 else ''}). {hint('split_overlap')}",
        )
    ]


def check_labels(
    stats: DataStats, task: str, num_classes: int, ignore_index: int
) -> list[Diagnosis]:
    if task not in ("classification", "segmentation"):
        return []
    found = []
    for split, s in (("train", stats.train), ("val", stats.val)):
        bad = sorted(
            k
            for k in s.label_counts
            if (k < 0 or k >= num_classes) and not (task == "segmentation" and k == ignore_index)
        )
        if bad:
            found.append(
                Diagnosis(
                    "label_out_of_range",
                    f"{split} labels {bad[:10]} lie outside [0, {num_classes}) for a model with "
                    f"{num_classes} outputs"
                    + (f" (data.ignore_index is {ignore_index})" if task == "segmentation" else "")
                    + f". {hint('label_out_of_range')}",
                )
            )
    return found


def sample_batch(ds: Dataset, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    items = [read_item(ds, i, "train") for i in probe_indices(len(ds))[:count]]
    try:
        x, y = default_collate(items)
    except Exception as exc:
        shapes = [tuple(torch.as_tensor(a).shape) for a, _ in items]
        raise DataError(
            f"train items cannot be batched together (input shapes {shapes}): {exc}"
        ) from exc
    return torch.as_tensor(x), torch.as_tensor(y)


def check_shapes(out: torch.Tensor, y: torch.Tensor, task: str) -> list[Diagnosis]:
    problem = None
    if task == "classification":
        if out.ndim != 2:
            problem = f"expected logits [B, C], got {tuple(out.shape)}"
        elif y.ndim != 1:
            problem = f"expected integer targets [B], got {tuple(y.shape)}"
    elif task == "segmentation":
        if out.ndim != 4:
            problem = f"expected logits [B, C, H, W], got {tuple(out.shape)}"
        elif y.ndim != 3 or tuple(y.shape[1:]) != tuple(out.shape[2:]):
            problem = (
                f"mask {tuple(y.shape)} does not match logits {tuple(out.shape)} (need [B, H, W])"
            )
    elif tuple(out.shape) != tuple(y.shape):
        problem = f"prediction {tuple(out.shape)} and target {tuple(y.shape)} differ"
    if problem is None and task in ("classification", "segmentation") and y.is_floating_point():
        problem = f"targets are {y.dtype}; {task} needs integer class labels"
    if problem is None:
        return []
    return [
        Diagnosis("shape_mismatch", f"model output vs target: {problem}. {hint('shape_mismatch')}")
    ]


def forward_probe(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    try:
        return model(x.to(device))
    except Exception as exc:
        raise ModelError(
            f"the model raised {type(exc).__name__} on a batch of shape {tuple(x.shape)} "
            f"({x.dtype}): {exc}"
        ) from exc


def check_init_loss(loss: float, task: str, out: torch.Tensor) -> list[Diagnosis]:
    classes = out.shape[1] if out.ndim >= 2 else 1
    expected = expected_init_loss(task, classes)
    if expected is None or not torch.isfinite(torch.tensor(loss)):
        return []
    if abs(loss - expected) / expected <= INIT_LOSS_TOLERANCE:
        return []
    return [
        Diagnosis(
            "unexpected_init_loss",
            f"loss at init is {loss:.4g}; for {classes} classes a fresh model should give about "
            f"ln {classes} = {expected:.4g}. {hint('unexpected_init_loss')}",
        )
    ]


def check_gradient_reach(model: nn.Module) -> list[Diagnosis]:
    missing = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))
    ]
    if not missing:
        return []
    shown = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
    return [
        Diagnosis(
            "no_gradient",
            f"{len(missing)} trainable parameter tensors got no gradient from one "
            f"forward/backward: {shown}. {hint('no_gradient')}",
        )
    ]


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
    if config.optim.scheduler != "none":
        features.append(f"LR decay ({config.optim.scheduler})")
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
) -> Verdict:
    task = config.task
    found: list[Diagnosis] = []
    found += check_repeat_reads(train, val)
    found += check_overlap(stats)
    x, y = sample_batch(train, min(4, len(train)))
    model.train()
    out = forward_probe(model, x, device)
    num_outputs = out.shape[1] if out.ndim >= 2 else 1
    shape_problems = check_shapes(out, y, task)
    found += shape_problems
    found += check_labels(stats, task, num_outputs, config.data.ignore_index)
    figures: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_size": stats.train.size,
        "val_size": stats.val.size,
        "input_shape": list(x.shape[1:]),
        "output_shape": list(out.shape[1:]),
    }
    if not shape_problems and not any(d.code == "label_out_of_range" for d in found):
        loss = loss_fn(out, y.to(device))
        figures["init_loss"] = float(loss.detach())
        if (expected := expected_init_loss(task, num_outputs)) is not None:
            figures["expected_init_loss"] = expected
        found += check_init_loss(float(loss.detach()), task, out)
        model.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            found += check_gradient_reach(model)
            model.zero_grad(set_to_none=True)
    found += check_fancy(model, config)
    status = "failed" if any(d.severity == "fail" for d in found) else "passed"
    return Verdict(status, found, figures)


def _same(a: Any, b: Any) -> bool:
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    return ta.shape == tb.shape and ta.dtype == tb.dtype and bool(torch.equal(ta, tb))


def exit_code_codes() -> Sequence[str]:
    """Preflight codes that mean 'bad data or a model that does not fit it': exit 2."""
    return ("label_out_of_range", "shape_mismatch")
