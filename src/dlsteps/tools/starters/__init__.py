"""The starter projects of ``dlsteps init DIR --task T``: per task a commented config, a
data source and a model source that climb the whole ladder as written, in seconds."""

from __future__ import annotations

from types import ModuleType

from dlsteps.tools.starters import classification, multilabel, regression, segmentation

STARTER_TASKS: dict[str, ModuleType] = {
    "classification": classification,
    "segmentation": segmentation,
    "regression": regression,
    "multilabel": multilabel,
}


def starter_files(task: str) -> dict[str, str]:
    """File name → text of the starter project for ``task``."""
    module = STARTER_TASKS[task]
    return {"dlsteps.yaml": module.CONFIG, "my_data.py": module.DATA, "my_model.py": module.MODEL}
