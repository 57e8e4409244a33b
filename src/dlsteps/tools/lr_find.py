"""``dlsteps lr-find CONFIG``: a learning-rate range test on the overfit-few batch.

    dlsteps lr-find configs/seg.yaml                # on overfit-few's batch
    dlsteps lr-find configs/seg.yaml --on train     # on batches of the whole train set

A fresh model (the config's seed) takes one step per rate while the rate grows from
``--low`` to ``--high``; the run survives the NaN a too-high rate makes, restores the
weights afterwards, and writes the curve to ``RUN_DIR/lr_sweep.json``, TensorBoard
(``lr_find/*``) and ``RUN_DIR/report.html``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from dlsteps.config import load_config
from dlsteps.data.items import NamedItems
from dlsteps.data.loading import FixedBatch, StepStream, pick_samples, workers
from dlsteps.errors import UserError
from dlsteps.ladder.project import Project
from dlsteps.ladder.runner import resolve_device
from dlsteps.logbook.curves import Row
from dlsteps.report.html import CSP, STYLE
from dlsteps.report.svgplot import Series, line_chart
from dlsteps.rundir.layout import LR_SWEEP_JSON
from dlsteps.rundir.run import RunDir
from dlsteps.train.engine import make_autocast
from dlsteps.train.lr_sweep import SweepCurve, lr_sweep, rates
from dlsteps.train.optim import make_optimizer
from dlsteps.train.steps import SupervisedStep


@dataclass
class LrFind:
    curve: SweepCurve
    run_dir: Path
    on: str

    def lines(self) -> list[str]:
        c = self.curve
        finite = [(lr, v) for lr, v in zip(c.lrs, c.smoothed, strict=True) if math.isfinite(v)]
        lowest = min(finite, key=lambda p: p[1])[0] if finite else None
        out = [f"lr-find on {self.on}: {len(c.lrs)} rates from {c.lrs[0]:.1e} to {c.lrs[-1]:.1e}"]
        if c.suggestion is None:
            out.append(
                "no rate made the loss fall: the rate is not what holds this model back "
                "(look at the data and the model; dlsteps check CONFIG)"
            )
        else:
            out.append(
                f"suggested lr {c.suggestion:.2g} (where the smoothed loss fell fastest; it "
                f"was lowest at {lowest:.2g}): set optim.lr: {c.suggestion:.2g}"
            )
        if len(c.lrs) < len(c.losses) or any(not math.isfinite(v) for v in c.losses):
            out.append(f"the loss turned NaN/Inf at lr {c.lrs[-1]:.2g}; the sweep stopped there")
        return out


def lr_find(
    config: Path,
    sets: list[str],
    on: str = "few",
    low: float = 1e-7,
    high: float = 1.0,
    steps: int = 100,
    run_dir: Path | None = None,
    device: str | None = None,
) -> LrFind:
    if on not in ("few", "train"):
        raise UserError(f"--on {on}: choose few (overfit-few's batch) or train")
    if not 0 < low < high:
        raise UserError(f"--low {low:g} --high {high:g}: need 0 < low < high")
    loaded = load_config(config, sets)
    stage = "overfit-few" if on == "few" else "full-data"
    plan = loaded.plans[stage]
    cfg = plan.config
    torch_device = resolve_device(device or cfg.device)
    run = RunDir.fresh(run_dir) if run_dir else RunDir.new(Path("runs"), f"{loaded.name}-lrfind")
    project = Project(loaded, torch_device)
    project.attach(run)
    train, _ = project.datasets(plan)
    task = project.task(plan)
    model = project.model(plan)
    if on == "few":
        indices = pick_samples(len(train), plan.knobs.samples or 10, cfg.seed)
        source: FixedBatch | StepStream = FixedBatch(
            NamedItems(train, "train"), indices, torch_device
        )
    else:
        source = StepStream(
            NamedItems(train, "train"), cfg.data.batch_size, cfg.seed, num_workers=workers(cfg.data)
        )
    optimizer = make_optimizer(model, cfg.optim, plain=True)
    loss_fn = task.loss().to(torch_device)
    autocast = make_autocast(torch_device, cfg.precision)

    def make_step() -> SupervisedStep:
        return SupervisedStep(model, optimizer, loss_fn, autocast or contextlib.nullcontext())

    curve = lr_sweep(
        model, optimizer, make_step, source.batches(), rates(low, high, steps), torch_device
    )
    _write(run, curve, on)
    return LrFind(curve, run.path, "overfit-few's batch" if on == "few" else "the train set")


def _write(run: RunDir, curve: SweepCurve, on: str) -> None:
    stage = run.stage("lr-find")
    stage.create()
    stage.write_json(LR_SWEEP_JSON, {**curve.to_json(), "on": on})
    with stage.logbook() as logbook:
        for i, (lr, loss, smooth) in enumerate(
            zip(curve.lrs, curve.losses, curve.smoothed, strict=True)
        ):
            logbook.write(
                [
                    Row(i, "lr_find/lr", lr),
                    Row(i, "lr_find/loss", loss),
                    Row(i, "lr_find/smoothed", smooth),
                ]
            )
    lrs, smoothed = np.log10(curve.lrs), np.asarray(curve.smoothed, dtype=np.float64)
    keep = np.isfinite(smoothed)
    chart = line_chart(
        [Series("loss (smoothed)", lrs[keep], smoothed[keep], "#1f77b4")],
        [],
        "learning-rate range test",
        log_y=True,
        x_label="log10 learning rate",
    )
    note = (
        f"suggested lr {curve.suggestion:.2g}" if curve.suggestion else "no rate made the loss fall"
    )
    run.write_report(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        f"<title>dlsteps lr-find</title><style>{STYLE}</style></head>"
        f"<body><h1>dlsteps lr-find</h1>"
        f"<p>{escape(note)}</p>{chart}</body></html>"
    )
