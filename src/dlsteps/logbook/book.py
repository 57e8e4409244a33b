"""The logbook of one stage: rows in, every sink fed the same rows.

Values arrive in chunks (see ``train.engine``), so a write here never waits on the device.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from dlsteps.logbook.curves import Row
from dlsteps.logbook.sinks import JsonlSink, NullSink, Sink, TensorBoardSink


class Logbook:
    """Append-only writer over ``sinks``."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    @classmethod
    def files(cls, stage_dir: Path, purge_step: int | None = None) -> Logbook:
        """``scalars.jsonl`` and TensorBoard event files in ``stage_dir``."""
        return cls([JsonlSink(stage_dir), TensorBoardSink(stage_dir, purge_step)])

    @classmethod
    def null(cls) -> Logbook:
        return cls([NullSink()])

    def write(self, rows: Iterable[Row]) -> None:
        rows = [Row(r.step, r.tag, float(r.value)) for r in rows]
        now = time.time()
        for sink in self.sinks:
            sink.write(rows, now)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        self.flush()
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> Logbook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
