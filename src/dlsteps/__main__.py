"""``python -m dlsteps run configs/seg.yaml`` is the same as ``dlsteps run configs/seg.yaml``."""

from dlsteps.cli import main

main()
