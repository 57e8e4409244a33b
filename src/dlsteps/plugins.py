"""Built-in names and ``package.module:function`` resolution for the user's own code.

Nothing in a config executes code except the ``module:function`` the user wrote there;
the current working directory is importable, so ``my_data.py`` beside the config works.
The tables of built-ins live with what they build (``data.registry``, ``models.registry``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from dlsteps.errors import ConfigError, did_you_mean

# Objects handed to ``dlsteps.climb`` (a model, data sets, a loss) stand in the config
# under a name of their own, valid in this process only.
GIVEN_PREFIX = "python:"
_GIVEN: dict[str, Callable[..., Any]] = {}


def give(kind: str, thing: Callable[..., Any]) -> str:
    """Register ``thing`` (a function, class or module) under a config name for this process."""
    name = f"{GIVEN_PREFIX}{kind}-{len(_GIVEN) + 1}"
    _GIVEN[name] = thing
    return name


def resolve(name: str, registry: Mapping[str, Callable[..., Any]], key: str) -> Callable[..., Any]:
    """A built-in by name, ``package.module:function`` imported from the user's code, or an
    object handed to ``dlsteps.climb``."""
    if name.startswith(GIVEN_PREFIX):
        if name not in _GIVEN:
            raise ConfigError(
                f"{key}: '{name}' stood for an object handed to dlsteps.climb() in another "
                "Python process; call climb() again from that script"
            )
        return _GIVEN[name]
    if ":" not in name:
        if name in registry:
            return registry[name]
        raise ConfigError(
            f"{key}: unknown built-in '{name}'.{did_you_mean(name, registry)} "
            f"Built-ins: {', '.join(sorted(registry))}; or write 'package.module:function'."
        )
    module_name, _, attr = name.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{key}: cannot import module '{module_name}' ({exc})") from exc
    except Exception as exc:
        raise ConfigError(
            f"{key}: importing '{module_name}' raised {type(exc).__name__}: {exc}"
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise ConfigError(
            f"{key}: module '{module_name}' has no function '{attr}'.{did_you_mean(attr, public)}"
        )
    return fn


def with_defaults(
    fn: Callable[..., Any], args: Mapping[str, Any], implied: Mapping[str, Any]
) -> dict[str, Any]:
    """``args`` plus the ``implied`` values (from the data) that ``fn`` declares and ``args``
    leaves out."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return dict(args)
    extra = {k: v for k, v in implied.items() if k in params and k not in args and v is not None}
    return {**extra, **args}


def call_text(kwargs: Mapping[str, Any]) -> str:
    """``a=1, b='x'``: a call's arguments as a message shows them."""
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
