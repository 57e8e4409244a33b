"""Which process this is among the ones torchrun launched, from its environment alone.

No torch here: the CLI asks it while reporting an error, before (or without) importing
torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# How long a rank other than 0 waits before reporting a user error (see ``cli.main``).
ERROR_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class World:
    """This process's place among the launched ones (from torchrun's environment)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    env = os.environ
    return World(
        int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))
    )


def is_main() -> bool:
    """True in a single process and on rank 0: the one process that writes."""
    return world().main
