"""One resumable state dict per stage: all a stage needs to continue at the exact next step.

It holds the model, optimizer, LR scheduler and grad scaler, the train step's own state
when it has one (a critic and its optimizer expose ``state_dict``/``load_state_dict``), the
RNG states of torch (CPU and CUDA), numpy and python, and the data position: the global
train batch (``StepStream.batches(start)``) and val batch to read next. It also holds the
hash of the resolved config, so ``--resume`` refuses a run made with another config.

Saved atomically through the stage's directory (``rundir.run.StageDir``) and loaded with
``weights_only=True``: a checkpoint can hold only tensors and plain containers, never code.
The numpy RNG key is therefore stored as a tensor, not as a numpy array.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlsteps.errors import UserError
from dlsteps.rundir.run import StageDir
from dlsteps.version import __version__

FORMAT = 1
# Keys that may change between an interrupted run and its resume: where it runs and with
# how many CPU threads (a busier machine may need fewer), and how often it logs, prints
# and checkpoints.
HASH_IGNORES = ("device", "threads", "log")


def config_hash(resolved: Mapping[str, Any]) -> str:
    """A short digest of the resolved config (``config.yaml``) minus ``HASH_IGNORES``."""
    keep = _without(resolved)
    keep["stages"] = {name: _without(stage) for name, stage in resolved.get("stages", {}).items()}
    text = json.dumps(keep, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in HASH_IGNORES}


@dataclass
class Trainables:
    """The live objects whose state a checkpoint carries."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any = None  # torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler | None = None
    train_step: Any = None  # saved when it has state_dict/load_state_dict


def capture(
    live: Trainables,
    *,
    stage: str,
    step: int,
    val_batch: int,
    config: str,
    finished: str | None,
    seconds: float,
) -> dict[str, Any]:
    """The state after ``step`` optimizer steps. ``finished`` is the stage's end reason
    (``completed``, ``early_stop``, ...) for its final checkpoint, ``None`` mid-stage."""
    return {
        "format": FORMAT,
        "dlsteps": __version__,  # a checkpoint resumes only under the version that wrote it
        "stage": stage,
        "config_hash": config,
        "step": step,
        "data": {"train_batch": step, "val_batch": val_batch},
        "finished": finished,
        "seconds": seconds,
        "model": live.model.state_dict(),
        "optimizer": live.optimizer.state_dict(),
        "scheduler": live.scheduler.state_dict() if live.scheduler is not None else None,
        "scaler": live.scaler.state_dict() if live.scaler is not None else None,
        "train_step": _step_state(live.train_step),
        "rng": rng_state(),
    }


def _step_state(train_step: Any) -> Any:
    state_dict = getattr(train_step, "state_dict", None)
    return state_dict() if callable(state_dict) else None


def save(stage: StageDir, state: dict[str, Any]) -> None:
    """``state`` as the stage's ``checkpoint.pt`` (a no-op where this process does not write)."""
    stage.save_checkpoint(lambda fh: torch.save(state, fh))


def read(path: Path, key: str) -> dict[str, Any]:
    """A checkpoint written by ``save`` (``weights_only``); a foreign or damaged file is a
    ``UserError`` naming ``key``, the option or config key that pointed at it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(
            f"{key}: cannot read the checkpoint {path} ({type(exc).__name__}: {first}); the "
            f"file is damaged or cut short. Delete it to train {path.parent.name} again from "
            "step 0 (its logbook is cleared), or start a new run"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{key}: {path} is not a resumable dlsteps checkpoint")
    written = state.get("dlsteps", __version__)  # checkpoints before the field: this version
    if written != __version__:
        raise UserError(
            f"{key}: {path} was written by dlsteps {written}, this is dlsteps {__version__}: "
            f"the training state may not load the same. Resume with dlsteps {written} "
            f"(pip install 'dlsteps=={written}'), or delete the checkpoint to train "
            f"{path.parent.name} again from step 0"
        )
    return state


def load(path: Path, expected_hash: str) -> dict[str, Any]:
    """Read a checkpoint to resume from: it must come from this very config."""
    state = read(path, "--resume")
    if state["config_hash"] != expected_hash:
        raise UserError(
            f"--resume: {path} was written with another config (hash {state['config_hash']}, "
            f"this config {expected_hash}); resume with the run's own config.yaml, or start "
            "a new run"
        )
    return state


def restore(live: Trainables, state: Mapping[str, Any], rng: bool = True) -> None:
    """Load every state of ``capture`` back; the RNG last, or (``rng=False``) by the caller
    with ``set_rng_state`` when more objects that draw from it are still to be built."""
    live.model.load_state_dict(state["model"])
    live.optimizer.load_state_dict(state["optimizer"])
    if live.scheduler is not None and state["scheduler"] is not None:
        live.scheduler.load_state_dict(state["scheduler"])
    if live.scaler is not None and state["scaler"] is not None:
        live.scaler.load_state_dict(state["scaler"])
    if state["train_step"] is not None:
        live.train_step.load_state_dict(state["train_step"])
    if rng:
        set_rng_state(state["rng"])


def rng_state() -> dict[str, Any]:
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(key.astype(np.int64)),  # (624,) MT19937 key
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    key = n["key"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], key, n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
