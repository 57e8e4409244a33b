"""``dlsteps init DIR [--task T] [--from-folder PATH]``: a project that climbs the ladder.

Without ``--from-folder``: three commented files a user edits into their own project,
``dlsteps.yaml`` (the config), ``my_data.py`` (a data source returning ``(train, val)``)
and ``my_model.py`` (a model source), a small synthetic example per task
(``tools.starters``) that takes seconds and gives every stage, augmentation included,
something real to do. With ``--from-folder PATH``: one ``dlsteps.yaml`` that reads the
user's folder with a built-in data source (``tools.from_folder``). Existing files are
never overwritten.
"""

from __future__ import annotations

from pathlib import Path

from dlsteps.errors import UserError
from dlsteps.tools.starters import STARTER_TASKS, starter_files


def scaffold(
    directory: Path, task: str = "classification", from_folder: Path | None = None
) -> list[Path]:
    """Write the starter files into ``directory``; refuse (exit 2) if any already exists."""
    if task not in STARTER_TASKS:
        raise UserError(f"init --task: choose one of {', '.join(STARTER_TASKS)}, not '{task}'")
    if from_folder is not None:
        from dlsteps.tools.from_folder import folder_config

        files = {"dlsteps.yaml": folder_config(from_folder, task)}
    else:
        files = starter_files(task)
    targets = [directory / name for name in files]
    taken = [str(p) for p in targets if p.exists()]
    if taken:
        raise UserError(
            f"init: {', '.join(taken)} already exist(s); dlsteps init never overwrites files. "
            "Choose a new directory or move them away."
        )
    if directory.exists() and not directory.is_dir():
        raise UserError(f"init: {directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in zip(targets, files.values(), strict=True):
        path.write_text(text, encoding="utf-8")
    return targets
