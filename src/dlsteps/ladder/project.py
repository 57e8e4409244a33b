"""What a run builds from its config, once: the data sets, their statistics, the task and a
fresh model per stage.

Stages that share a data config share the data sets and the statistics (one pass over
the data, cached as the run directory's ``data_stats.json``). ``check_builds`` builds the
first stage's data and model before anything is recorded, so a config that cannot be
built fails before the run has a config, a summary or a logbook.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from dlsteps.config import LoadedConfig, StagePlan
from dlsteps.data.loading import workers
from dlsteps.data.registry import build_datasets
from dlsteps.data.stats import DataStats, ItemParts, data_stats
from dlsteps.ladder.own_step import own_step
from dlsteps.models.registry import build_model
from dlsteps.rundir.run import RunDir
from dlsteps.tasks import make_task
from dlsteps.tasks.base import Task


@dataclass
class Project:
    loaded: LoadedConfig
    device: torch.device
    _run: RunDir | None = None  # attached once the config has built
    _datasets: dict[str, tuple[Dataset, Dataset]] = field(default_factory=dict)
    _stats: dict[str, DataStats] = field(default_factory=dict)

    @property
    def run(self) -> RunDir:
        if self._run is None:
            raise RuntimeError("the project has no run directory yet")
        return self._run

    def attach(self, run: RunDir) -> None:
        self._run = run

    def check_builds(self, plan: StagePlan) -> None:
        """Build ``plan``'s data sets (kept) and a model (dropped: every stage builds its
        own from the seed) and import the config's own step; a ``UserError`` here means
        the config does not build."""
        model = self.model(plan)
        own_step(plan.config, model)

    def task(self, plan: StagePlan) -> Task:
        return make_task(plan.config)

    def datasets(self, plan: StagePlan) -> tuple[Dataset, Dataset]:
        key = _data_key(plan)
        if key not in self._datasets:
            cfg = plan.config
            self._datasets[key] = build_datasets(
                cfg.data.name,
                cfg.data.args,
                cfg.seed,
                run_dir=self.run.path if self.run.writes else None,
                num_workers=workers(cfg.data),
                ignore_index=cfg.data.ignore_index,
            )
        return self._datasets[key]

    def stats(self, plan: StagePlan) -> DataStats:
        key = _data_key(plan)
        if key not in self._stats:
            train, val = self.datasets(plan)
            # the run's own data is cached in its directory; a stage's other data is not
            own = key == _data_key(self.loaded.plans["preflight"])
            cfg = plan.config
            self._stats[key] = data_stats(
                train,
                val,
                # an own step without a declared task: no labels to count, whatever the
                # default task is
                labels=self.task(plan).counts_labels and (cfg.declares_task or not cfg.own_batches),
                num_workers=workers(cfg.data),
                seed=cfg.seed,
                cache=self.run.data_stats_json if own else None,
                save=self.run.writes,
                parts=item_parts(cfg),
            )
        return self._stats[key]

    def model(self, plan: StagePlan) -> nn.Module:
        """A fresh model from the config's seed; ``in_channels``/``num_classes`` from the
        data set's attributes where the model function declares them."""
        train, _ = self.datasets(plan)
        implied = {
            "in_channels": getattr(train, "in_channels", None),
            # one output channel for two classes where the loss reads a binary logit
            "num_classes": self.task(plan).model_outputs(getattr(train, "num_classes", None)),
            "block_size": getattr(train, "block_size", None),  # a language model's context
        }
        seed_everything(plan.config.seed)
        model = plan.config.model
        # the config's own step reads whatever the forward returns
        output = None if plan.config.own_batches else model.output
        return build_model(model.name, model.args, implied, output=output).to(self.device)


def item_parts(config: Any) -> ItemParts:
    """How the data pass reads an item: an (input, target) pair, or for the config's own
    ``step`` any structure whose parts ``data.inputs``/``data.target`` name."""
    if not config.own_batches:
        return ItemParts()
    inputs = tuple(config.data.inputs) if config.data.inputs else None
    return ItemParts(pairs=False, inputs=inputs, target=config.data.target)


def _data_key(plan: StagePlan) -> str:
    d = plan.config.data
    return repr((d.name, sorted(d.args.items()), plan.config.seed))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
