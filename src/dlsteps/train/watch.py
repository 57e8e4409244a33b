"""Watching the model while it trains, at almost no cost: never per step after the first.

- ``UpdateWatch``: the first optimizer step must change every parameter that got a
  gradient and no frozen one (optimizer hooks, removed after that step);
- ``LayerHealth``: at every flush, on one fixed batch in eval mode, the share of dead ReLU
  units and saturated sigmoid/tanh outputs per layer, the gradient norm per top-level
  layer group, and the norm of all weights, logged as curves;
- ``NanWatch``: the state at the last good flush, kept so that a NaN can be replayed with
  hooks to the module (or the input, or the update) where it was born.

What they find is plain text and numbers; judging it is the ladder's.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlsteps.data.batches import leaves, to_device
from dlsteps.logbook.book import Logbook
from dlsteps.logbook.curves import Row
from dlsteps.train.checkpoint import rng_state, set_rng_state
from dlsteps.train.engine import Callback, Progress, Source, Stop


class UpdateWatch:
    """In the first optimizer step that has a non-zero LR, a trainable parameter with a
    non-zero gradient must be updated, and a frozen one must not change. "Not updated"
    is judged by cause, not by equality alone: the optimizer does not hold the parameter,
    or holds it in a group with LR 0 while others train. A held parameter with LR > 0
    that stays equal is not flagged: an update below float resolution (a gradient of
    1e-20 through a saturated gate) leaves it equal on a correct model. A step the grad
    scaler skipped (inf gradients in fp16) never reaches the optimizer, so it is not
    judged; nor is a step every group of which has LR 0 (a warm-up from 0): the next is."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.named: list[tuple[str, nn.Parameter]] = []
        self.problems: list[str] = []
        self.done = False
        self._before: dict[str, torch.Tensor] = {}
        self._hooks = [
            optimizer.register_step_pre_hook(self._snapshot),
            optimizer.register_step_post_hook(self._compare),
        ]

    def _snapshot(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        # read now, not when built: a layer created in forward() exists only from here
        self.named = list(self.model.named_parameters())
        self._before = {n: p.detach().clone() for n, p in self.named}

    def _compare(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
        if not any(lr > 0 for lr in lr_of.values()):
            self._before = {}
            return  # a warm-up from LR 0: nothing could move yet; judge the next step
        stuck, moved = [], []
        for name, p in self.named:
            changed = not torch.equal(self._before[name], p.detach())
            if p.requires_grad and p.grad is not None and bool((p.grad != 0).any()):
                if not changed and id(p) not in lr_of:
                    stuck.append(f"{name} (not in the optimizer)")
                elif not changed and lr_of[id(p)] == 0:
                    stuck.append(f"{name} (its parameter group's LR is 0)")
            elif not p.requires_grad and changed:
                moved.append(name)
        if stuck:
            self.problems.append(
                f"{len(stuck)} parameter tensors got a non-zero gradient but did not change in "
                f"the first optimizer step: {_names(stuck)}. The optimizer does not update "
                "them: built before these layers existed (a layer created in forward()), or a "
                "parameter group with learning rate 0"
            )
        if moved:
            self.problems.append(
                f"{len(moved)} frozen parameter tensors (requires_grad False) changed in the "
                f"first optimizer step: {_names(moved)}. Something updates them in place "
                "(a forward that writes to its weights, or weight decay applied to them)"
            )
        self._before = {}
        self.close()

    def close(self) -> None:
        self.done = True
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


HEALTH_SAMPLES = 8  # val samples the layer-health forward runs on


class LayerHealth(Callback):
    """Curves of how the layers are doing, measured at every flush on one fixed batch:
    ``health/dead/<layer>`` (share of a ReLU's units that are 0 for every sample),
    ``health/saturated/<layer>`` (share of a sigmoid's/tanh's outputs within 1 % of their
    bounds), ``grad/norm/<group>`` (the last step's gradient norm per top-level layer) and
    ``weights/norm`` (all trainable weights)."""

    def __init__(
        self,
        model: nn.Module,
        batch: Any,
        logbook: Logbook,
        forward: Callable[[Any], Any] | None = None,
    ) -> None:
        """``forward(batch)`` runs the model on the batch (the config's own step, for a
        batch that is not one input tensor); default ``model(batch)``."""
        self.model, self.batch, self.logbook = model, batch, logbook
        self.forward = forward or model
        self.squashing = {
            n: m for n, m in model.named_modules() if isinstance(m, nn.ReLU | nn.Sigmoid | nn.Tanh)
        }
        groups: dict[str, list[nn.Parameter]] = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                groups.setdefault(name.split(".")[0], []).append(p)
        self.groups = groups if len(groups) > 1 else {}
        self.measured = -1  # the step of the last measurement

    def at_flush(self, progress: Progress) -> Stop | None:
        self.measure(progress.step)
        return None

    def measure(self, step: int) -> None:
        """The curves' points at ``step`` (at every flush, and once more at the stage end:
        a stage that stops early stops before its last flush's callbacks)."""
        if step == self.measured:
            return
        self.measured = step
        rows = [Row(step, f"health/{kind}/{name}", share) for kind, name, share in self._units()]
        for group, params in self.groups.items():
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                rows.append(Row(step, f"grad/norm/{group}", float(norm)))
        weights = [p.detach() for p in self.model.parameters() if p.requires_grad]
        if weights:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(weights)))
            rows.append(Row(step, "weights/norm", float(norm)))
        self.logbook.write(rows)

    def _units(self) -> list[tuple[str, str, float]]:
        if not self.squashing:
            return []
        seen: dict[str, torch.Tensor] = {}

        def keep(name: str):
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                if isinstance(output, torch.Tensor):
                    seen[name] = output.detach()

            return hook

        handles = [m.register_forward_hook(keep(n)) for n, m in self.squashing.items()]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.forward(self.batch)
        finally:
            self.model.train(was_training)
            for handle in handles:
                handle.remove()
        out = []
        for name, t in seen.items():
            module = self.squashing[name]
            if isinstance(module, nn.ReLU):
                units = t.transpose(0, 1).reshape(t.shape[1], -1) if t.ndim > 1 else t[None]
                out.append(("dead", name, float((units == 0).all(dim=1).float().mean())))
            else:
                low, high = (-1.0, 1.0) if isinstance(module, nn.Tanh) else (0.0, 1.0)
                edge = 0.01 * (high - low)
                saturated = (t <= low + edge) | (t >= high - edge)
                out.append(("saturated", name, float(saturated.float().mean())))
        return out


@dataclass
class _Snapshot:
    step: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    rng: dict[str, Any]


class NanWatch(Callback):
    """Keeps the state after the last flush whose losses were all finite, so a NaN can be
    replayed from it (``replay``). Small models only: the copy is the model and the
    optimizer state once more, on the CPU."""

    MAX_PARAMETERS = 50_000_000

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any = None
    ) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        count = sum(p.numel() for p in model.parameters())
        self.enabled = count <= self.MAX_PARAMETERS
        self.snapshot = self._take(0) if self.enabled else None

    def at_flush(self, progress: Progress) -> Stop | None:
        if self.enabled:
            self.snapshot = self._take(progress.step)
        return None

    def _take(self, step: int) -> _Snapshot:
        return _Snapshot(
            step,
            _to_cpu(self.model.state_dict()),
            _to_cpu(self.optimizer.state_dict()),
            copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            rng_state(),
        )

    def replay(self, step_fn: Any, train: Source, nan_step: int, batch_indices: Any) -> str | None:
        """Replay from the snapshot to ``nan_step`` through the stage's own train step,
        watching each module's output and the update; where the first non-finite value
        appeared, as a sentence (None when the replay could not reproduce it)."""
        snap = self.snapshot
        if snap is None or nan_step <= snap.step:
            return None
        self.model.load_state_dict(snap.model)
        self.optimizer.load_state_dict(snap.optimizer)
        if self.scheduler is not None and snap.scheduler is not None:
            self.scheduler.load_state_dict(snap.scheduler)
        set_rng_state(snap.rng)
        batches = train.batches(snap.step)
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        for step in range(snap.step + 1, nan_step + 1):
            where = f"at step {step} (train items {batch_indices(step)})"
            device = next(self.model.parameters()).device
            batch = to_device(next(batches), device)
            inputs = batch[0] if _is_pair(batch) else batch  # a pair's targets are not input
            for path, tensor in leaves(inputs, "input batch"):
                if (bad := _nonfinite_share(tensor)) is not None:
                    return f"It was born in the {path} {where}: {bad} of its values are NaN/Inf."
            with _first_nonfinite_output(self.model) as first:
                try:
                    with warnings.catch_warnings():  # "anomaly detection enabled": we know
                        warnings.simplefilter("ignore")
                        anomaly = torch.autograd.detect_anomaly(check_nan=True)
                    with anomaly:
                        loss, _, _ = step_fn(batch)
                    if self.scheduler is not None:
                        self.scheduler.step()
                except RuntimeError as exc:
                    if first.name is not None:
                        return f"It was born in the output of module '{first.name}' {where}."
                    return f"It was born in the backward pass {where}: {str(exc).splitlines()[0]}"
            if first.name is not None:
                return f"It was born in the output of module '{first.name}' {where}."
            if not math.isfinite(float(loss.detach())):
                return f"It was born in the loss {where}: the model's outputs were finite."
            if broken := [n for n, p in params if not bool(torch.isfinite(p).all())]:
                return (
                    f"It was born in the update {where}: the loss and the gradients were "
                    f"finite, but {_names(broken)} became NaN/Inf after the optimizer step."
                )
        return None


class _First:
    name: str | None = None


@contextmanager
def _first_nonfinite_output(model: nn.Module) -> Iterator[_First]:
    """Notes the first module (in the order they ran) whose output is not finite."""
    first = _First()

    def hook(name: str):
        def check(module: nn.Module, args: Any, output: Any) -> None:
            if first.name is None and _nonfinite(output):
                first.name = name or type(module).__name__

        return check

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()]
    try:
        yield first
    finally:
        for handle in handles:
            handle.remove()


def first_nonfinite_module(model: nn.Module, x: torch.Tensor) -> str | None:
    """The first module whose output is NaN/Inf on ``x`` (``'input'`` when ``x`` is)."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        return "input"
    with _first_nonfinite_output(model) as first, torch.no_grad():
        model(x)
    return first.name


def _nonfinite(output: Any) -> bool:
    return (
        isinstance(output, torch.Tensor)
        and output.is_floating_point()
        and not bool(torch.isfinite(output).all())
    )


def _is_pair(batch: Any) -> bool:
    return isinstance(batch, tuple | list) and len(batch) == 2


def _nonfinite_share(x: torch.Tensor) -> str | None:
    if not x.is_floating_point() or bool(torch.isfinite(x).all()):
        return None
    return f"{int((~torch.isfinite(x)).sum())} of {x.numel()}"


def _to_cpu(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_to_cpu(v) for v in state)
    return copy.deepcopy(state)


def _names(names: Sequence[str]) -> str:
    return ", ".join(names[:6]) + (f", ... ({len(names) - 6} more)" if len(names) > 6 else "")
