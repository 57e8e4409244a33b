"""``run.lock``: one process at a time writes a run directory.

Two ``--resume``s of one run, or a resume of a trial an ablation worker is training,
would interleave their logbook rows and overwrite each other's checkpoints. The process
that writes a run directory holds ``run.lock`` (its PID, host and start time) for as
long as it runs; a second one refuses, naming the first. The lock is created whole or
not at all (written to a temporary file, then hard-linked into place, which fails when
the name exists), so a reader never sees half a lock.

A lock left by a process that died (``kill -9``, a power loss) is stale: its PID is gone
from this host. ``--resume`` takes it over and says so; a lock from another host cannot
be checked from here, so it is refused with the way to break it by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from dlsteps.errors import RunLocked, StorageError
from dlsteps.rundir.layout import RUN_LOCK


def holder(run_dir: Path) -> dict[str, Any] | None:
    """What ``run.lock`` says (pid, host, started), or ``None`` when the run is not locked."""
    try:
        text = (run_dir / RUN_LOCK).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        return {"pid": None, "host": None, "started": None}
    return found if isinstance(found, dict) else {"pid": None, "host": None, "started": None}


def alive(pid: Any) -> bool:
    """Whether ``pid`` is a running process on this host."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@contextlib.contextmanager
def locked(run_dir: Path, notes: list[str]) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block; a stale one is taken over (said in ``notes``)."""
    try:
        acquired = _acquire(run_dir, notes)
    except OSError as exc:  # the first write into the directory: it is the writability test
        raise StorageError(
            f"cannot write the run directory {run_dir} ({exc.strerror}); choose a folder you "
            "can write, or make this one writable"
        ) from exc
    if not acquired:  # held by this very process already: its own to release
        yield
        return
    try:
        yield
    finally:
        release(run_dir)


def release(run_dir: Path) -> None:
    """Remove the lock if this process holds it (a discarded directory removes it first)."""
    found = holder(run_dir)
    if found is not None and found.get("pid") == os.getpid() and found.get("host") == _host():
        (run_dir / RUN_LOCK).unlink(missing_ok=True)


def _acquire(run_dir: Path, notes: list[str]) -> bool:
    """Take the lock; ``False`` when this process holds it already."""
    mine = {"pid": os.getpid(), "host": _host(), "started": _now()}
    for _ in range(3):  # a lock broken or released between our look and our link: try again
        if _link(run_dir, mine):
            return True
        found = holder(run_dir)
        if found is None:
            continue
        if found.get("pid") == os.getpid() and found.get("host") == _host():
            return False  # this process holds it already (a run nested in its own run)
        if found.get("host") != _host() or alive(found.get("pid")):
            raise _refusal(run_dir, found)
        notes.append(
            f"took over a stale {RUN_LOCK} of PID {found.get('pid')} on {found.get('host')} "
            f"(since {found.get('started')}): that process is gone"
        )
        (run_dir / RUN_LOCK).unlink(missing_ok=True)
    raise _refusal(run_dir, holder(run_dir) or {})


def _link(run_dir: Path, content: dict[str, Any]) -> bool:
    """Create ``run.lock`` with ``content`` whole; ``False`` when it exists already."""
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{RUN_LOCK}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(content, fh)
        os.link(tmp, run_dir / RUN_LOCK)
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def _refusal(run_dir: Path, found: dict[str, Any]) -> RunLocked:
    pid, host, since = found.get("pid"), found.get("host"), found.get("started")
    return RunLocked(
        f"{run_dir} is in use by PID {pid} on host {host} (since {since}, {run_dir / RUN_LOCK}); "
        "wait for it to end. If that process is gone (it ran on another machine, or its "
        f"lock is damaged), delete {run_dir / RUN_LOCK} and run again"
    )


def _host() -> str:
    return socket.gethostname()


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")
