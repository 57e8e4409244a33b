"""Write-then-rename file writes: a reader (or a kill at any instant) never sees half a file.

Every file dlsteps rewrites in place (``summary.json``, ``verdict.json``, ``config.yaml``,
checkpoints, a truncated logbook) goes through here, called by the run directory's owner
(``rundir.run``), which alone decides whether this process writes. The bytes land in a
temporary file beside the target, are fsynced, and ``os.replace`` swaps it in; the
directory is fsynced too, so the rename itself survives a power loss. After ``kill -9``
the target holds either the old or the new content, and at worst a ``.<name>.*.tmp`` file
is left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# mkstemp creates files 0600; a run directory's files get the usual umask-based mode
_UMASK = os.umask(0)
os.umask(_UMASK)
_MODE = 0o666 & ~_UMASK


def write_with(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a full disk's message names the file it refused
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; platforms that cannot open a directory skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    write_with(path, lambda fh: fh.write(data))


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())
