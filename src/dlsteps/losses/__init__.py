"""The losses a config names: ``loss: {name, args}``.

Built-ins: ``cross_entropy``, ``bce_with_logits``, ``dice``, ``dice_ce``, ``focal``,
``mse``, ``l1``, ``huber``; or ``package.module:function`` for your own. Each task has a
default (``auto``). This module imports no torch: the config checks a loss name by its
shape alone, and the implementations (``losses.builtin``) load only when a run builds
its task.
"""

from __future__ import annotations

BUILTIN_LOSSES = (
    "cross_entropy",
    "bce_with_logits",
    "dice",
    "dice_ce",
    "focal",
    "mse",
    "l1",
    "huber",
)


def is_loss_name(name: str) -> bool:
    """A built-in, ``auto`` (the task's own) or a ``module:function`` of the user's."""
    return name == "auto" or name in BUILTIN_LOSSES or (":" in name and not name.startswith(":"))
