"""dlsteps: walk a deep-learning project up a ladder of gated stages.

The library is usable without the CLI: ``dlsteps.ladder.runner.run_ladder`` climbs the
ladder, ``dlsteps.ladder.stages.judge_stage`` re-judges a stage from its logbook.
"""

__version__ = "0.1.0"
