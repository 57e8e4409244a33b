"""Errors a user can cause, mapped to the documented exit codes by the CLI.

Anything raised as a ``UserError`` is printed as one message without a traceback and
exits 2; everything else is a bug in dlsteps or in the user's code and keeps its
traceback (under ``--debug`` for user errors too).
"""

from __future__ import annotations

import difflib
import errno
import re
from collections.abc import Iterable
from pathlib import Path

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A bad config, bad data, a bad model or a usage mistake: exit code 2.

    ``code`` is the diagnosis code a stage that stopped on it records (``dlsteps
    explain CODE``)."""

    code = "usage_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(UserError):
    """The config file, an overlay or a ``--set`` is wrong; the message names the key."""

    code = "config_error"


class DataError(UserError):
    """The data set cannot be used as it is; the message names the sample or the file."""

    code = "data_error"


class ModelError(UserError):
    """The model cannot be built or does not fit the data."""

    code = "model_error"


class StorageError(UserError):
    """The run directory cannot be written: a full disk, a quota, a read-only or
    unwritable folder. Nothing is half-written (``rundir.atomic``, the logbook's rollback),
    so ``--resume`` continues once the cause is gone."""

    code = "storage_error"


class RunLocked(UserError):
    """Another live process holds the run directory's ``run.lock``."""

    code = "run_locked"


# A disk that is full or over quota: wherever the file is, the run cannot go on.
_FULL = (errno.ENOSPC, errno.EDQUOT)
# Refused writes: the run directory's alone (a data file the user cannot read is a data error).
_REFUSED = (errno.EROFS, errno.EACCES, errno.EPERM)


def storage_error(exc: BaseException, run_dir: Path) -> StorageError | None:
    """The user-facing form of an ``OSError`` met while writing ``run_dir``, or ``None``
    when ``exc`` is not about storage."""
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    where = exc.filename or run_dir
    inside = exc.filename is not None and _inside(Path(exc.filename), run_dir)
    if exc.errno in _FULL:
        return StorageError(
            f"cannot write {where}: {exc.strerror} (the disk is full or over quota). Nothing "
            f"was half-written; free space and continue with --resume {run_dir}"
        )
    if exc.errno in _REFUSED and inside:
        return StorageError(
            f"cannot write {where}: {exc.strerror}. Make {run_dir} writable and continue "
            f"with --resume {run_dir}"
        )
    return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' Did you mean ...?' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


# torch's words for a DataLoader worker that died without an exception (segfault,
# os._exit, OOM kill)
_WORKER_DIED = re.compile(r"DataLoader worker \(pid.*?\) (is killed by signal|exited unexpectedly)")


def as_user_error(exc: BaseException) -> UserError | None:
    """The user-facing form of ``exc``, or ``None`` when it is not the user's to fix.

    A ``UserError`` raised in a DataLoader worker comes back re-wrapped around a traceback
    text, and a worker that crashed leaves only torch's words for it: both become one
    message. Anything else keeps its traceback."""
    if isinstance(exc, UserError):
        return _unwrapped(exc)
    if isinstance(exc, RuntimeError) and _WORKER_DIED.search(str(exc)):
        first = str(exc).splitlines()[0].rstrip(". ")
        return DataError(
            f"{first}. A worker crashes like this when __getitem__ segfaults, calls exit or "
            "runs out of memory; set data.num_workers: 0 to see the error in the main process"
        )
    return None


def _unwrapped(exc: UserError) -> UserError:
    """'Caught DataError in DataLoader worker process 0. Original Traceback ...' → the
    error's own message."""
    text = str(exc)
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return exc
    marker = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    _, found, message = text.rpartition(marker)
    if not found:
        return exc
    return type(exc)(f"{message.strip()} (in a DataLoader worker)", exc.code)
