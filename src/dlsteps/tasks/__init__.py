"""The tasks: one object per kind of project, owning everything that differs between them.

A ``Task`` (``tasks.base``) holds its default loss, the loss a fresh model should start
at, the input-independent baseline, the target contract, its val metrics and primary
metric, its pictures and its ladder. A new task is one file with a ``Task`` subclass plus
one ``register_task`` call; the config accepts its name at once.

This module imports no torch: the config validates ``task:`` against ``task_names()``,
and a task's module is imported only when a run needs the task itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dlsteps.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from dlsteps.tasks.base import Task

_BUILTIN: dict[str, str] = {
    "classification": "dlsteps.tasks.classification:Classification",
    "segmentation": "dlsteps.tasks.segmentation:Segmentation",
    "regression": "dlsteps.tasks.regression:Regression",
    "multilabel": "dlsteps.tasks.multilabel:Multilabel",
    "generative": "dlsteps.tasks.generative:Generative",
    "language_model": "dlsteps.tasks.language_model:LanguageModel",
}
_REGISTERED: dict[str, type[Task]] = {}


def register_task(name: str, task: type[Task]) -> None:
    """Make ``task: <name>`` mean ``task`` (a ``Task`` subclass) in every config."""
    _REGISTERED[name] = task


def task_names() -> list[str]:
    return [*_BUILTIN, *(n for n in _REGISTERED if n not in _BUILTIN)]


def task_class(name: str) -> type[Task]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BUILTIN:
        raise ConfigError(
            f"task: unknown task '{name}'.{did_you_mean(name, task_names())} "
            f"Tasks: {', '.join(task_names())}"
        )
    module, _, attr = _BUILTIN[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_task(config: Any) -> Task:
    """The task of a validated ``Config``, set up with the config's data settings."""
    return task_class(config.task).from_config(config)
