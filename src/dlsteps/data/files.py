"""Finding a data set's files on disk: image files, split folders, a stable split.

Shared by the folder data sources (``image_folder``, ``segmentation_folder``). A folder
without its own val split is split by a hash of each file's path relative to the root,
so a file stays on its side when files are added or removed, and the split never
depends on the order the file system lists them in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dlsteps.errors import ConfigError, DataError

# what PIL and torchvision.io decode; other files (Thumbs.db, .txt notes) are skipped
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
VAL_NAMES = ("val", "valid", "validation")  # accepted names of a val folder


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; hidden files are skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def existing_root(root: str | Path | None, key: str = "data.args.root") -> Path:
    """``root`` as a directory that exists, or a ``ConfigError`` naming the key."""
    if root is None:
        raise ConfigError(f"{key} is required: the folder that holds the data")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{key}: no folder at {path.resolve()}")
    return path


def val_folder(parent: Path) -> Path | None:
    """``parent``'s val folder (``val``, ``valid`` or ``validation``) when it has one."""
    for name in VAL_NAMES:
        if (parent / name).is_dir():
            return parent / name
    return None


def in_val(relative: str, val_fraction: float) -> bool:
    """Whether the file at ``relative`` (a path relative to the data root, with ``/``)
    belongs to val: the first 8 bytes of its BLAKE2 hash, as a fraction of 2**64."""
    digest = hashlib.blake2b(relative.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < val_fraction


def check_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise ConfigError(f"data.args.val_fraction: must lie in (0, 1), got {val_fraction}")


def relative_key(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def split_names(names: list[str], key: str, what: str) -> None:
    """Refuse an empty split with a message that says what was looked for where."""
    if not names:
        raise DataError(f"{key}: {what}")
