"""The engine keeps per-step values on the device and writes them in chunks: nothing may be
lost or land on the wrong step, whatever ends the loop (the same code path runs on CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from dlsteps.data.loading import StepStream
from dlsteps.data.shapes import shapes
from dlsteps.logbook.book import Logbook
from dlsteps.logbook.curves import Curves, read_curves
from dlsteps.models.unet import tiny_unet
from dlsteps.train import engine, steps
from dlsteps.train.callbacks import Periodic

STEPS = 30
PER_STEP = ("train/loss", "grad/norm", "lr", "val/loss", "diag/output_spread")


def _fit(
    stage_dir: Path,
    flush_every: int,
    *,
    poison: int | None = None,
    every: list | None = None,
) -> engine.FitResult:
    """A seeded tiny U-Net on shapes; ``poison`` puts Inf into that train item's input."""
    train, val = shapes(num_train=32, num_val=16, size=16, num_classes=3, seed=0)
    if poison is not None:
        train.inputs[poison] = math.inf
    torch.manual_seed(0)
    model = tiny_unet(in_channels=3, num_classes=3, width=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss(ignore_index=255)
    autocast = engine.make_autocast(torch.device("cpu"), "32")
    setup = engine.FitSetup(
        model=model,
        step=steps.SupervisedStep(model, optimizer, loss_fn, autocast),
        optimizer=optimizer,
        scheduler=None,
        loss_fn=loss_fn,
        train=StepStream(train, 4, seed=0),
        val=StepStream(val, 4, seed=1),
        total_steps=STEPS,
        device=torch.device("cpu"),
        autocast=autocast,
        flush_every=flush_every,
        callbacks=[Periodic(n, fn) for n, fn in every or []],
    )
    with Logbook.files(stage_dir) as logbook:
        return engine.fit(setup, logbook)


def _pairs(curves: Curves, tag: str) -> list[tuple[int, float]]:
    curve = curves.get_curve(tag)
    return list(zip(curve.steps.tolist(), curve.values.tolist(), strict=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Curves:
    """Every value flushed at its own step: what chunked runs must reproduce."""
    stage_dir = tmp_path_factory.mktemp("every-step")
    assert _fit(stage_dir, flush_every=1).reason == "completed"
    return read_curves(stage_dir)


def test_chunked_flush_loses_no_value_and_keeps_steps(tmp_path: Path, reference: Curves) -> None:
    # 7 does not divide 30: the last, partial chunk is flushed at the end
    result = _fit(tmp_path, flush_every=7)
    assert (result.reason, result.last_step) == ("completed", STEPS)
    curves = read_curves(tmp_path)
    for tag in PER_STEP:
        assert _pairs(curves, tag) == _pairs(reference, tag), tag
        assert curves.get_curve(tag).steps.tolist() == list(range(1, STEPS + 1)), tag
    for tag in ("time/data", "time/compute"):
        assert curves.get_curve(tag).steps.tolist() == list(range(1, STEPS + 1)), tag
    # throughput and memory once per flush, at the flush's step
    for tag in ("time/steps_per_s", "time/samples_per_s", "mem/host_peak_mb"):
        assert curves.get_curve(tag).steps.tolist() == [7, 14, 21, 28, 30], tag
    samples = curves.get_curve("time/samples_per_s").values
    steps = curves.get_curve("time/steps_per_s").values
    assert samples == pytest.approx(4 * steps)  # batch 4


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_values_of_an_unflushed_chunk_survive_an_interrupt_or_crash(
    tmp_path: Path, reference: Curves, error: type[BaseException]
) -> None:
    def at_step(step: int) -> None:
        if step == 17:  # flushed at 7 and 14; 15-17 still wait on the device
            raise error("stop here")

    with pytest.raises(error):
        _fit(tmp_path, flush_every=7, every=[(1, at_step)])
    curves = read_curves(tmp_path)
    for tag in PER_STEP:
        assert _pairs(curves, tag) == _pairs(reference, tag)[:17], tag


def test_nan_is_caught_at_the_next_flush_with_its_exact_step(tmp_path: Path) -> None:
    # sample 5 holds Inf: the first step whose batch contains it turns the loss NaN
    one_by_one = _fit(tmp_path / "flush-1", flush_every=1, poison=5)
    assert one_by_one.reason == "nan_loss"
    nan_step = one_by_one.nan_step
    assert nan_step is not None and nan_step < STEPS - 5

    chunked = _fit(tmp_path / "flush-5", flush_every=5, poison=5)
    assert (chunked.reason, chunked.nan_step) == ("nan_loss", nan_step)
    assert chunked.last_step == 5 * math.ceil(nan_step / 5)  # the first flush after it
    train = read_curves(tmp_path / "flush-5").get_curve("train/loss")
    assert train.steps.tolist() == list(range(1, chunked.last_step + 1))
    assert not math.isfinite(train.values[nan_step - 1])
    assert all(math.isfinite(v) for v in train.values[: nan_step - 1])


def test_output_spread_matches_its_definition() -> None:
    """The hand-written form (10x faster on CPU) equals std over the batch / overall std."""
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(16, 4, 8, 8, generator=gen) + torch.randn(4, 8, 8, generator=gen)
    expected = out.std(dim=0).mean() / out.std()
    assert steps.output_spread(out).item() == pytest.approx(expected.item(), rel=1e-5)
    same = torch.randn(4, 8, 8, generator=gen).expand(16, 4, 8, 8)
    assert steps.output_spread(same).item() == pytest.approx(0.0, abs=1e-6)
