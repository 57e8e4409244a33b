"""The logbook: every scalar of a stage, in ``scalars.jsonl`` and TensorBoard event files.

Both backends receive exactly the same ``(step, tag, value)`` rows; tests and gates read
the JSONL (one ``{"step", "tag", "value", "time"}`` object per line), people read
TensorBoard. Values arrive in chunks (see ``engine``), so a write here never waits on
the device.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.tensorboard import SummaryWriter

SCALARS = "scalars.jsonl"


@dataclass(frozen=True)
class Row:
    step: int
    tag: str
    value: float


class Logbook:
    """Append-only writer for one stage directory."""

    def __init__(self, stage_dir: Path, purge_step: int | None = None):
        stage_dir.mkdir(parents=True, exist_ok=True)
        self.path = stage_dir / SCALARS
        self._jsonl = self.path.open("a", encoding="utf-8")
        # purge_step makes TensorBoard hide events at or after it from a crashed earlier run
        self._tb = SummaryWriter(str(stage_dir), purge_step=purge_step, flush_secs=30)

    def write(self, rows: Iterable[Row]) -> None:
        now = time.time()
        lines = []
        for row in rows:
            value = float(row.value)
            lines.append(
                json.dumps(
                    {"step": row.step, "tag": row.tag, "value": _jsonable(value), "time": now}
                )
            )
            self._tb.add_scalar(row.tag, value, row.step, walltime=now)
        if lines:
            self._jsonl.write("\n".join(lines) + "\n")

    def flush(self) -> None:
        self._jsonl.flush()
        self._tb.flush()

    def close(self) -> None:
        self.flush()
        self._jsonl.close()
        self._tb.close()

    def __enter__(self) -> Logbook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(value: float) -> float | str:
    """JSON has no NaN/Infinity; keep them readable and round-trippable as strings."""
    return value if math.isfinite(value) else str(value)


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


def read_curves(stage_dir: Path) -> Curves:
    """Read a stage's ``scalars.jsonl`` back; a torn last line (from a kill) is ignored."""
    path = stage_dir / SCALARS
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
