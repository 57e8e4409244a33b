"""Configuration as data: the schema (``config.schema``), the augmentation catalog
(``config.augmentations``) and reading YAML + stage overlays + ``--set`` into one
validated, frozen config per stage (``config.load``). Nothing here imports torch."""

from dlsteps.config.load import (
    LoadedConfig,
    StagePlan,
    build_config,
    load_config,
    resolved_dict,
    set_dotted,
)
from dlsteps.config.schema import Config

__all__ = [
    "Config",
    "LoadedConfig",
    "StagePlan",
    "build_config",
    "load_config",
    "resolved_dict",
    "set_dotted",
]
