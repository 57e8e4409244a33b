"""``model.name: "lightning:package.module:LitModel"``: a LightningModule class as it is.

The class is built with ``model.args`` and its ``setup("fit")`` hook is called, as a
Trainer would before fitting; its ``training_step``, ``validation_step`` and
``configure_optimizers`` then run inside dlsteps' own loop (``train.lightning``).
Lightning itself is imported only to tell a LightningModule from other classes (the
optional extra ``lightning``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from dlsteps.errors import ConfigError, ModelError
from dlsteps.plugins import resolve

PREFIX = "lightning:"


def is_lightning(model: nn.Module) -> bool:
    """A LightningModule, told without importing Lightning (a plain run never pays for it)."""
    return any(c.__name__ == "LightningModule" for c in type(model).__mro__)


def lightning_model(name: str) -> Callable[..., nn.Module]:
    """The builder of ``package.module:LitModel`` (the part after ``lightning:``)."""
    require_lightning("model.name")
    cls = resolve(name, {}, "model.name")

    def build(**kwargs: Any) -> nn.Module:
        module = cls(**kwargs)
        if not isinstance(module, nn.Module) or not is_lightning(module):
            raise ModelError(
                f"model.name: lightning:{name} is {type(module).__name__}, not a "
                "lightning.LightningModule; give a LightningModule class, or drop 'lightning:'"
            )
        try:
            module.setup("fit")
        except Exception as exc:
            raise ModelError(
                f"model.name: lightning:{name}.setup('fit') raised {type(exc).__name__}: {exc} "
                "(dlsteps runs without a Trainer: self.trainer is not available)"
            ) from exc
        return module

    return build


def require_lightning(key: str) -> None:
    try:
        import lightning  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"{key}: 'lightning:' needs Lightning: pip install 'dlsteps[lightning]'"
        ) from exc
