"""Reading a stage's logbook back: tag → curve, from ``scalars.jsonl`` alone.

Gates, the report and the tests read curves here; nothing in this module needs torch or
TensorBoard, so judging a finished run needs neither.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlsteps.rundir.layout import SCALARS_JSONL


@dataclass(frozen=True)
class Row:
    """One logged value: what every sink receives and ``scalars.jsonl`` holds."""

    step: int
    tag: str
    value: float


@dataclass(frozen=True)
class Curve:
    steps: np.ndarray  # (N,) int64
    values: np.ndarray  # (N,) float64

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def last(self) -> float:
        return float(self.values[-1])


EMPTY = Curve(np.zeros(0, dtype=np.int64), np.zeros(0))


class Curves(dict[str, Curve]):
    """Tag → curve; a missing tag reads as an empty curve."""

    def get_curve(self, tag: str) -> Curve:
        return self.get(tag, EMPTY)


def jsonable(value: float) -> float | str:
    """JSON has no NaN/Infinity; keep them readable and round-trippable as strings."""
    return value if math.isfinite(value) else str(value)


def read_curves(stage_dir: Path) -> Curves:
    """Read a stage's ``scalars.jsonl`` back; a torn last line (from a kill) is ignored."""
    path = stage_dir / SCALARS_JSONL
    by_tag: dict[str, tuple[list[int], list[float]]] = {}
    if path.exists():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                steps, values = by_tag.setdefault(rec["tag"], ([], []))
                steps.append(int(rec["step"]))
                values.append(float(rec["value"]))
    return Curves(
        {
            tag: Curve(np.asarray(s, dtype=np.int64), np.asarray(v, dtype=np.float64))
            for tag, (s, v) in by_tag.items()
        }
    )


@dataclass(frozen=True)
class Kept:
    """``scalars.jsonl`` cut back to a checkpoint's step (``kept_lines``)."""

    lines: list[str]  # the rows at or before the step, in file order
    dropped: int  # rows after the step, and a torn last line
    damaged: list[int]  # 1-based numbers of lines that are not rows, before the last one
    last_step: int  # the highest step kept (0: none)


def kept_lines(stage_dir: Path, last_step: int) -> Kept | None:
    """The ``scalars.jsonl`` lines at or before ``last_step``; ``None`` when the stage has
    no logbook. A torn last line is what a kill during an append leaves, and is dropped;
    a line that is not a row with more rows after it is damage, listed in ``damaged``."""
    path = stage_dir / SCALARS_JSONL
    if not path.exists():
        return None
    kept, dropped, damaged, highest = [], 0, [], 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            step = json.loads(line)["step"]
            keep = step <= last_step
        except (json.JSONDecodeError, KeyError, TypeError):
            if number < len(lines):
                damaged.append(number)
            dropped += 1
            continue
        if keep:
            kept.append(line)
            highest = max(highest, step)
        else:
            dropped += 1
    return Kept(kept, dropped, damaged, highest)
