"""How many threads torch computes with on the CPU: the config's ``threads``.

torch's default is one intra-op thread per core. Every op is split across them and waits
for the slowest, so on a machine where another process holds a core, each op waits for
a thread the scheduler has parked (and the waiting threads spin, taking CPU from the
other process too). A thread count that leaves cores free degrades gracefully instead:
another process then takes a free core rather than one of torch's. On the shared 2-core
development machine (``scripts/bench_threads.py``, table in ``scripts/README.md``) the
seg ladder to full-data took 268 s with torch's two threads and 42 s with one while other
jobs kept over a core busy, and next to one more busy loop 560 s against 93 s.

``auto`` therefore keeps half of this process's cores free, and the cores the DataLoader
workers need (each worker computes with one thread, torch's setting in workers): on 2
cores that is one thread; with CUDA (a worker per core) it is one thread for the main
process, whose CPU work is small. When ``OMP_NUM_THREADS`` is set (by the user, or by
torchrun for each of several processes) ``auto`` leaves torch's threads as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class Threads:
    """torch's intra-op thread count for a stretch of the run, and why."""

    count: int
    setting: str  # "auto" or the configured number, as written
    left_alone: bool = False  # OMP_NUM_THREADS decided (auto only)
    why: str = ""


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota
    (a container limited to 2 CPUs on a 64-core host has 2, not 64)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def auto_count(cores: int, workers: int) -> int:
    """Half the cores, and none of those the DataLoader workers need; at least one."""
    return max(1, min(cores // 2, cores - workers))


def choose(
    setting: int | str,
    workers: int = 0,
    *,
    cores: int | None = None,
    env: Mapping[str, str] | None = None,
    current: int | None = None,
) -> Threads:
    """The thread count ``setting`` means here; ``current`` is torch's count before dlsteps
    changed anything (what ``auto`` keeps when ``OMP_NUM_THREADS`` is set)."""
    env = os.environ if env is None else env
    if setting != "auto":
        return Threads(int(setting), str(setting))
    if env.get("OMP_NUM_THREADS"):
        count = current if current is not None else torch.get_num_threads()
        return Threads(count, "auto", left_alone=True, why="OMP_NUM_THREADS is set")
    cores = cores or usable_cores()
    count = auto_count(cores, workers)
    why = f"{cores} cores, half kept free for other work"
    if workers:
        why += f", {workers} for DataLoader workers"
    return Threads(count, "auto", why=why)


class RunThreads:
    """The run's threads: chosen once when it starts, changed for a stage whose config says
    otherwise, and back for the next one. As a context manager it applies the run's
    count and gives the process its own count back at the end (``run_ladder`` called
    from a notebook leaves torch as it found it)."""

    def __init__(self, setting: int | str, workers: int = 0) -> None:
        self.initial = torch.get_num_threads()
        self.run = choose(setting, workers, current=self.initial)

    def __enter__(self) -> RunThreads:
        _apply(self.run.count)
        return self

    def __exit__(self, *exc: object) -> None:
        _apply(self.initial)

    def announcement(self) -> str | None:
        """What ``auto`` chose, said once per run; nothing when the user decided (a number
        in the config, or ``OMP_NUM_THREADS``)."""
        if self.run.setting != "auto" or self.run.left_alone:
            return None
        plural = "s" if self.run.count > 1 else ""
        return f"threads: auto → {self.run.count} torch thread{plural} ({self.run.why})"

    def for_stage(self, setting: int | str, workers: int = 0) -> str | None:
        """Apply a stage's ``threads``; a note when they differ from the run's."""
        chosen = choose(setting, workers, current=self.initial)
        _apply(chosen.count)
        if chosen.count == self.run.count:
            return None
        plural = "s" if chosen.count > 1 else ""
        return f"{chosen.count} torch thread{plural} in this stage (threads: {chosen.setting})"


def _apply(count: int) -> None:
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
