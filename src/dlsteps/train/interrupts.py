"""SIGINT/SIGTERM → finish the current step, flush the logbook, checkpoint, exit 130.

A pre-empted job gets SIGTERM, a person at the terminal presses Ctrl-C: either way the
step in flight completes, so the checkpoint is consistent and ``--resume`` continues at
the exact next step. The handler only raises a flag; ``engine.fit`` reads it once per
step (one Python call) and the runner reads it between stages. A second signal aborts at
once with ``KeyboardInterrupt`` (the last periodic checkpoint is then the resume point).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The run stopped at a signal: inside a stage after saving its checkpoint at ``step``,
    or between stages (``step`` None)."""

    def __init__(self, step: int | None = None) -> None:
        super().__init__("interrupted" if step is None else f"interrupted after step {step}")
        self.step = step


class StopFlag:
    """Callable ``() -> bool``: has a stop been requested?"""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None


@contextmanager
def graceful(say: Callable[[str], None]) -> Iterator[StopFlag]:
    """Within the block, the first SIGINT/SIGTERM sets the flag; the second aborts.

    Outside the main thread (a library caller's worker thread) signals cannot be caught;
    the flag then simply never rises.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.signal is not None:
            raise KeyboardInterrupt
        flag.signal = signum
        say(
            f"{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
            "(send it again to abort at once)"
        )

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
