"""Benchmark the dlsteps engine against a hand-written PyTorch loop (and Lightning).

    .venv/bin/python scripts/bench_engine.py                       # CPU, batch 16 and 1
    .venv/bin/python scripts/bench_engine.py --repeats 7 --threads 2
    .venv/bin/python scripts/bench_engine.py --device cuda --precision bf16   # on a GPU

In one process and alternating (the order rotates every repeat), each implementation
does identical work on ``configs/seg.yaml``-sized data: tiny_unet (width 16) on 32x32
shapes, Adam, cross-entropy; every step one train batch, the train loss logged to
TensorBoard, then a forward pass on one random val batch (val batch = train batch)
whose loss is logged too. ``--batch 1`` uses one fixed sample, like ``overfit-one``.

  raw       a plain loop: forward, backward, step, ``writer.add_scalar(loss.item())``
  dlsteps   ``engine.fit`` as the stages call it (plus grad norm, lr, timing, output
            spread, JSONL + TensorBoard, chunked flush)
  lightning ``lightning.Trainer`` with ``self.log`` every step (only when installed:
            ``pip install -e '.[bench]'``)

Steps/s is measured between the batch at ``--warmup`` and the batch ``--steps`` later
(both multiples of the flush interval, so a CUDA run is measured between two host
syncs). A repeat during which other processes used more than ``--max-foreign`` cores
(from /proc/stat minus this process's CPU time) is rerun, up to ``--retries`` times; the
script first waits up to ``--max-wait`` seconds for the machine to be quiet.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset
from torch.utils.tensorboard import SummaryWriter

from dlsteps.data.loading import FixedBatch, StepStream, pick_samples
from dlsteps.data.shapes import shapes
from dlsteps.logbook.book import Logbook
from dlsteps.models.unet import tiny_unet
from dlsteps.train import engine
from dlsteps.train.steps import SupervisedStep

LR = 3e-3
IGNORE_INDEX = 255


@dataclass(frozen=True)
class Work:
    batch: int
    warmup: int
    steps: int
    flush_every: int  # what the stage would use: 25 (log.flush_every), 10 in overfit stages
    device: torch.device
    precision: str  # 32 | bf16
    clock: Callable[[], float] = time.perf_counter  # time.process_time: CPU seconds

    @property
    def fixed(self) -> bool:
        """Batch 1 is the overfit-one case: one sample held in memory, no loader."""
        return self.batch == 1

    @property
    def pin(self) -> bool:
        """Pinned host memory on CUDA, as dlsteps' default: non_blocking copies overlap."""
        return self.device.type == "cuda"

    @property
    def total(self) -> int:
        return self.warmup + self.steps + 1  # +1: the batch that ends the timed window

    def autocast(self) -> contextlib.AbstractContextManager:
        return engine.make_autocast(self.device, self.precision)


Stamps = list[float]


def _model(work: Work) -> nn.Module:
    torch.manual_seed(0)
    return tiny_unet(in_channels=3, num_classes=4, width=16).to(work.device)


def _loss(work: Work) -> nn.Module:
    return nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX).to(work.device)


def _loader(dataset: Dataset, work: Work, gen: torch.Generator) -> DataLoader:
    return DataLoader(dataset, work.batch, shuffle=True, generator=gen, pin_memory=work.pin)


def _endless(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


# --- (a) the hand-written loop --------------------------------------------------------


def run_raw(work: Work, train: Dataset, val: Dataset, logdir: Path) -> Stamps:
    model, loss_fn = _model(work), _loss(work)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    writer = SummaryWriter(str(logdir))
    gen = torch.Generator().manual_seed(0)
    if work.fixed:
        x0, y0 = next(iter(DataLoader(Subset(train, pick_samples(len(train), 1, 0)), 1)))
        train_it: Iterator = itertools.repeat((x0.to(work.device), y0.to(work.device)))
    else:
        train_it = _endless(_loader(train, work, gen))
    val_it = _endless(_loader(val, work, gen))
    autocast, device, stamps = work.autocast(), work.device, []
    model.train()
    for step in range(1, work.total + 1):
        stamps.append(work.clock())
        x, y = next(train_it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast:
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        writer.add_scalar("train/loss", loss.item(), step)
        vx, vy = next(val_it)
        vx, vy = vx.to(device, non_blocking=True), vy.to(device, non_blocking=True)
        model.eval()
        with torch.no_grad(), autocast:
            vloss = loss_fn(model(vx), vy)
        model.train()
        writer.add_scalar("val/loss", vloss.item(), step)
    writer.close()
    return stamps


# --- (b) the dlsteps engine -----------------------------------------------------------


class _Stamped:
    """A train source that notes the time each batch is handed to the engine."""

    def __init__(self, inner: engine.Source, stamps: Stamps, clock: Callable[[], float]) -> None:
        self.inner, self.stamps, self.clock = inner, stamps, clock

    def batches(self, start: int = 0) -> Iterator:
        for batch in self.inner.batches(start):
            self.stamps.append(self.clock())
            yield batch


def run_dlsteps(work: Work, train: Dataset, val: Dataset, logdir: Path) -> Stamps:
    model, loss_fn = _model(work), _loss(work)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    source: engine.Source = (
        FixedBatch(train, pick_samples(len(train), 1, 0), work.device)
        if work.fixed
        else StepStream(train, work.batch, 0, pin_memory=work.pin)
    )
    stamps: Stamps = []
    autocast = work.autocast()
    setup = engine.FitSetup(
        model=model,
        step=SupervisedStep(model, optimizer, loss_fn, autocast),
        optimizer=optimizer,
        scheduler=None,
        loss_fn=loss_fn,
        train=_Stamped(source, stamps, work.clock),
        val=StepStream(val, work.batch, 1, pin_memory=work.pin),
        total_steps=work.total,
        device=work.device,
        autocast=autocast,
        flush_every=work.flush_every,
    )
    with Logbook.files(logdir) as logbook:
        engine.fit(setup, logbook)
    return stamps


# --- (c) Lightning --------------------------------------------------------------------


def run_lightning(work: Work, train: Dataset, val: Dataset, logdir: Path) -> Stamps:
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    model, loss_fn = _model(work), _loss(work)
    gen = torch.Generator().manual_seed(0)
    val_it = _endless(_loader(val, work, gen))
    autocast = work.autocast()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.loss_fn = model, loss_fn

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = self.loss_fn(self.model(x), y)
            self.log("train/loss", loss, on_step=True, on_epoch=False)
            return loss

        def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
            vx, vy = next(val_it)
            vx = vx.to(self.device, non_blocking=True)
            vy = vy.to(self.device, non_blocking=True)
            self.model.eval()
            with torch.no_grad(), autocast:
                vloss = self.loss_fn(self.model(vx), vy)
            self.model.train()
            self.log("val/loss", vloss, on_step=True, on_epoch=False)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=LR)

    stamps: Stamps = []

    class Stamp(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            stamps.append(work.clock())

    if work.fixed:
        one = next(iter(DataLoader(Subset(train, pick_samples(len(train), 1, 0)), 1)))
        one = tuple(t.to(work.device) for t in one)
        loader = DataLoader(_Repeat(one), batch_size=None)  # hands the same batch over
    else:
        loader = _loader(train, work, gen)
    trainer = L.Trainer(
        accelerator="gpu" if work.device.type == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed" if work.precision == "bf16" else "32-true",
        max_steps=work.total,
        logger=TensorBoardLogger(str(logdir), name="", version=""),
        log_every_n_steps=1,
        callbacks=[Stamp()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Module(), train_dataloaders=loader)
    return stamps


class _Repeat(IterableDataset):
    def __init__(self, batch: tuple) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator:
        return itertools.repeat(self.batch)


# --- measuring ------------------------------------------------------------------------


class CpuMeter:
    """Cores used by *other* processes over an interval: all busy CPU time on the machine
    (/proc/stat) minus this process's own."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self) -> None:
        self.start()

    @classmethod
    def _busy(cls) -> float:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / cls.TICK

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def start(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    def foreign_cores(self) -> float:
        wall = time.perf_counter() - self.t0
        other = (self._busy() - self.busy0) - (self._own() - self.own0)
        return max(0.0, other) / max(wall, 1e-9)


def wait_for_quiet(max_foreign: float, max_wait: float) -> float:
    """Sample the machine each second until other processes use < ``max_foreign`` cores."""
    deadline = time.monotonic() + max_wait
    while True:
        meter = CpuMeter()
        time.sleep(1.0)
        load = meter.foreign_cores()
        if load < max_foreign or time.monotonic() >= deadline:
            return load
        print(f"  waiting for a quiet machine: other processes use {load:.2f} cores", flush=True)


def steps_per_second(stamps: Stamps, work: Work) -> float:
    window = stamps[work.warmup : work.warmup + work.steps + 1]
    return work.steps / (window[-1] - window[0])


Runner = Callable[[Work, Dataset, Dataset, Path], Stamps]


def bench(work: Work, impls: dict[str, Runner], args: argparse.Namespace) -> dict[str, list]:
    train, val = shapes(num_train=256, num_val=64, size=32, num_classes=4, seed=0)
    rates: dict[str, list[float]] = {name: [] for name in impls}
    names = list(impls)
    for rep in range(args.repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for attempt in range(args.retries + 1):
            wait_for_quiet(args.max_foreign, args.max_wait)
            meter, got = CpuMeter(), {}
            for name in order:
                with tempfile.TemporaryDirectory() as tmp:
                    got[name] = steps_per_second(impls[name](work, train, val, Path(tmp)), work)
            foreign = meter.foreign_cores()
            disturbed = foreign > args.max_foreign
            shown = "  ".join(f"{n} {got[n]:7.1f}" for n in names)
            flag = f"  DISTURBED ({foreign:.2f} foreign cores)" if disturbed else ""
            print(f"  batch {work.batch} repeat {rep + 1}: steps/s {shown}{flag}", flush=True)
            if not disturbed or attempt == args.retries:
                break
        for name in names:
            rates[name].append(got[name])
    return rates


def summarise(work: Work, rates: dict[str, list[float]]) -> dict:
    def stats(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    out: dict = {"batch": work.batch, "steps_per_s": {n: stats(v) for n, v in rates.items()}}
    raw = rates["raw"]
    for other in ("raw", "lightning"):
        if other not in rates or "dlsteps" not in rates:
            continue
        pairs = list(zip(rates["dlsteps"], rates[other], strict=True))
        out[f"dlsteps/{other}"] = stats([d / o for d, o in pairs])
        out[f"dlsteps_extra_ms_vs_{other}"] = stats([1e3 / d - 1e3 / o for d, o in pairs])
    if "lightning" in rates:
        pairs = list(zip(rates["lightning"], raw, strict=True))
        out["lightning_extra_ms_vs_raw"] = stats([1e3 / lt - 1e3 / r for lt, r in pairs])
    return out


def print_summary(summary: dict) -> None:
    print(f"\nbatch {summary['batch']}: steps/s median [min, max]")
    for name, s in summary["steps_per_s"].items():
        print(f"  {name:10s} {s['median']:8.1f}  [{s['min']:.1f}, {s['max']:.1f}]")
    for key, s in summary.items():
        if key not in ("batch", "steps_per_s"):
            print(f"  {key:28s} {s['median']:8.3f}  [{s['min']:.3f}, {s['max']:.3f}]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[16, 1])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=200, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=50, help="untimed steps first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["32", "bf16"], default="32")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU seconds instead of wall time; with --threads 1 it compares "
        "the work done per step even on a busy machine (CPU only, not for CUDA)",
    )
    p.add_argument("--impls", nargs="+", default=["raw", "dlsteps", "lightning"])
    p.add_argument("--max-foreign", type=float, default=0.25, help="cores others may use")
    p.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait for quiet")
    p.add_argument("--retries", type=int, default=3, help="reruns of a disturbed repeat")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # Lightning's advice on workers and loggers
    runners: dict[str, Runner] = {"raw": run_raw, "dlsteps": run_dlsteps}
    try:
        import lightning  # noqa: F401

        # after the import, which sets its own level: no banner, no tips
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        runners["lightning"] = run_lightning
    except ImportError:
        print("lightning is not installed: pip install -e '.[bench]' to compare with it")
    impls = {name: runners[name] for name in args.impls if name in runners}
    if "raw" not in impls:
        raise SystemExit("--impls must include raw (the reference)")
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        p.error("--clock cpu measures host CPU time only; use the wall clock on a GPU")
    print(
        f"device {device}, precision {args.precision}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus, {args.clock} clock, "
        f"impls {list(impls)}"
    )
    results = []
    for batch in args.batch:
        flush = 10 if batch == 1 else 25
        work = Work(
            batch=batch,
            warmup=_round_up(args.warmup, flush),
            steps=_round_up(args.steps, flush),
            flush_every=flush,
            device=device,
            precision=args.precision,
            clock=time.process_time if args.clock == "cpu" else time.perf_counter,
        )
        summary = summarise(work, bench(work, impls, args))
        print_summary(summary)
        results.append(summary)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _round_up(n: int, k: int) -> int:
    return max(k, -(-n // k) * k)


if __name__ == "__main__":
    main()
