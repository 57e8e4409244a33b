"""Ablations: many variants of one config trained at once, the unpromising ones stopped early.

    dlsteps ablate configs/seg.yaml --grid optim.lr=1e-2,1e-3,1e-4 --grid model.args.width=8,16,32

Each variant is an Optuna trial that runs one stage (``full-data`` by default) as an
ordinary run directory under ``<ablation dir>/trials/NNN``. At every logbook flush the
trial reports the best smoothed val loss (or ``ablate.metric``) so far, and an Optuna
pruner (successive halving by default; hyperband, median or none) stops the trials that
are behind; they are recorded as ``pruned`` with the step and the reason. Modules:
``space`` (variants), ``study`` (storage and trial hand-out), ``trial`` (one run and its
pruning hook), ``worker`` (the loop, ``--parallel``), ``results`` (leaderboard, HParams),
``command`` (``run_ablation``).
"""

from dlsteps.ablate.command import AblateRequest, AblationResult, run_ablation

__all__ = ["AblateRequest", "AblationResult", "run_ablation"]
