"""The generative track: L1 stages first, then the adversarial stage with a WGAN-GP critic.

The gradient penalty is checked against a hand computation, the adversarial gate on
hand-made curves and on real training with a critic broken on purpose, and the stage is
refused through the real CLI while the L1 stages have not passed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from dlsteps.config import build_config, load_config
from dlsteps.data.loading import StepStream
from dlsteps.data.pix2pix import shapes_pix2pix
from dlsteps.data.stats import data_stats
from dlsteps.judge.schemas import AdversarialGate
from dlsteps.ladder.stages import judge_stage as judge
from dlsteps.logbook.book import Logbook
from dlsteps.logbook.curves import Curve, Curves, read_curves
from dlsteps.models.gan import conv_critic, pix2pix_unet
from dlsteps.observe.observer import StageObserver
from dlsteps.rundir.run import StageDir
from dlsteps.tasks import task_class
from dlsteps.train.adversarial import AdversarialStep, gradient_penalty
from dlsteps.train.engine import FitSetup, fit

ROOT = Path(__file__).resolve().parents[1]

TINY_GEN: dict[str, Any] = {
    "name": "tinygen",
    "task": "generative",
    "seed": 0,
    "data": {
        "name": "shapes_pix2pix",
        "args": {"num_train": 32, "num_val": 16, "size": 16, "max_shapes": 1},
        "batch_size": 8,
    },
    "model": {"name": "pix2pix_unet", "args": {"width": 8}},
    "optim": {"name": "adam", "lr": 0.003},
    "adversarial": {"critic": {"args": {"width": 8, "depth": 2}}, "critic_steps": 2},
    "stages": {
        "overfit-one": {"steps": 2},
        "overfit-few": {"samples": 4, "steps": 2},
        "full-data": {"steps": 2},
        "adversarial": {"steps": 2},
    },
}


# --- the gradient penalty ---------------------------------------------------------------


class LinearCritic(nn.Module):
    """score = <w, image> + <v, condition>: its gradient w.r.t. the image is w everywhere."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.v = nn.Parameter(torch.ones(1, 2, 2))

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return (image * self.w).sum(dim=(1, 2, 3)) + (condition * self.v).sum(dim=(1, 2, 3))


def test_gradient_penalty_of_a_linear_critic_is_norm_minus_one_squared() -> None:
    w = torch.tensor([[[1.0, 2.0], [2.0, 0.0]]])  # (1, 2, 2), norm 3
    critic = LinearCritic(w)
    cond, real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    gp = gradient_penalty(critic, cond, real, fake)
    assert gp.item() == pytest.approx((3.0 - 1.0) ** 2)
    # the penalty's own gradient reaches the weights: d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w|
    gp.backward()
    torch.testing.assert_close(critic.w.grad, 2 * (3.0 - 1.0) * w / 3.0)


def test_gradient_penalty_of_a_quadratic_critic_matches_a_hand_computation() -> None:
    """score = sum(image²): gradient 2·x̂ at x̂ = ε·real + (1-ε)·fake, ε ~ U(0, 1) per sample."""

    class Quadratic(nn.Module):
        def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
            return image.pow(2).sum(dim=(1, 2, 3))

    real, fake = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    torch.manual_seed(7)
    gp = gradient_penalty(Quadratic(), real, real, fake)
    torch.manual_seed(7)
    eps = torch.rand(3, 1, 1, 1)  # the same draw the penalty made
    mixed = eps * real + (1 - eps) * fake
    norms = [2 * float(mixed[i].pow(2).sum().sqrt()) for i in range(3)]
    expected = sum((n - 1) ** 2 for n in norms) / 3
    assert gp.item() == pytest.approx(expected, rel=1e-5)


# --- the adversarial gate on hand-made curves --------------------------------------------


def _curves(
    wasserstein: np.ndarray, distance: float = 5.0, l1: tuple[float, float] = (0.05, 0.051)
) -> Curves:
    n = len(wasserstein)
    steps = np.arange(1, n + 1)
    flat = lambda v: Curve(steps, np.full(n, v, dtype=np.float64))  # noqa: E731
    return Curves(
        {
            "train/loss": Curve(steps, np.linspace(0.06, 0.05, n)),
            "grad/norm": flat(1.0),
            "gan/wasserstein": Curve(steps, np.asarray(wasserstein, dtype=np.float64)),
            "gan/distance": flat(distance),
            "gan/critic": Curve(steps, -np.asarray(wasserstein, dtype=np.float64)),
            "gan/gp": flat(0.1),
            "metrics/l1": Curve(np.array([0, n]), np.array(l1)),
            "metrics/psnr": Curve(np.array([0, n]), np.array([21.0, 21.2])),
        }
    )


def _codes(verdict: Any) -> list[str]:
    return [d.code for d in verdict.diagnoses if d.severity == "fail"]


def test_adversarial_gate_passes_a_healthy_critic() -> None:
    verdict = judge("adversarial", _curves(np.full(40, 4.0)), AdversarialGate())
    assert verdict.status == "passed", verdict.diagnoses
    assert verdict.figures["val_l1"] == pytest.approx(0.051)
    assert verdict.figures["l1_only_val_l1"] == pytest.approx(0.05)
    assert verdict.figures["val_psnr"] == pytest.approx(21.2)


@pytest.mark.parametrize(
    ("wasserstein", "code"),
    [
        (np.geomspace(1.0, 1e4, 40), "critic_diverging"),  # far above the Lipschitz bound
        (np.r_[np.full(20, 3.0), np.full(20, np.nan)], "critic_diverging"),
        (np.full(40, 1e-4), "critic_collapse"),  # the critic tells nothing apart
    ],
)
def test_adversarial_gate_names_a_broken_critic(wasserstein: np.ndarray, code: str) -> None:
    assert _codes(judge("adversarial", _curves(wasserstein), AdversarialGate()))[0] == code


def test_adversarial_gate_fails_when_val_l1_degrades_beyond_tolerance() -> None:
    worse = _curves(np.full(40, 4.0), l1=(0.05, 0.07))
    assert _codes(judge("adversarial", worse, AdversarialGate())) == ["adversarial_hurts"]
    lenient = AdversarialGate(max_l1_increase=0.5)
    assert judge("adversarial", worse, lenient).status == "passed"


# --- a real critic broken on purpose --------------------------------------------------------


def _adversarial_run(tmp_path: Path, critic_lr: float) -> Curves:
    """The L1-trained tiny generator continued for 30 steps through the real loop."""
    torch.manual_seed(0)
    train, val = shapes_pix2pix(num_train=32, num_val=16, size=16, max_shapes=1)
    generator = pix2pix_unet(1, 3, width=8)
    optimizer = torch.optim.Adam(generator.parameters(), lr=3e-3)
    for _ in range(60):  # the full-data stage in miniature: L1 alone
        loss = nn.functional.l1_loss(generator(train.inputs), train.targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    critic = conv_critic(4, width=8, depth=2)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=critic_lr, betas=(0.0, 0.9))
    optimizer = torch.optim.Adam(generator.parameters(), lr=3e-4)
    step = AdversarialStep(
        generator,
        critic,
        optimizer,
        critic_optimizer,
        nn.L1Loss(),
        critic_steps=2,
        gp_weight=10.0,
        l1_weight=100.0,
    )
    setup = FitSetup(
        model=generator,
        step=step,
        optimizer=optimizer,
        scheduler=None,
        loss_fn=nn.L1Loss(),
        train=StepStream(train, 8, seed=0),
        val=StepStream(val, 8, seed=1),
        total_steps=30,
        device=torch.device("cpu"),
        flush_every=10,
    )
    stage_dir = tmp_path / f"lr{critic_lr:g}"
    with Logbook.files(stage_dir) as logbook:
        views = _observer(generator, (train, val), stage_dir, logbook)
        views.start()  # the L1-only generator's val L1 and PSNR at step 0
        result = fit(setup, logbook)
        views.finish(result.last_step)
    return read_curves(stage_dir)


def _observer(generator, datasets, stage_dir: Path, logbook: Logbook) -> StageObserver:
    """The stage observer of a generative run on ``datasets`` (val L1/PSNR, pictures)."""
    plan = build_config(dict(TINY_GEN), "test").plan("adversarial")
    train, val = datasets
    stats = data_stats(train, val, labels=False)
    task = task_class("generative")()
    cpu = torch.device("cpu")
    return StageObserver(
        plan, task, generator, datasets, StageDir(stage_dir, True), logbook, cpu, None, stats
    )


def test_a_critic_with_a_huge_learning_rate_is_diagnosed(tmp_path: Path) -> None:
    healthy = judge("adversarial", _adversarial_run(tmp_path, 3e-3), AdversarialGate())
    assert healthy.status == "passed", healthy.diagnoses
    broken = judge("adversarial", _adversarial_run(tmp_path, 10.0), AdversarialGate())
    assert _codes(broken)[0] == "critic_diverging"


# --- the stage refused before the L1 stages pass -----------------------------------------------


def _write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_adversarial_stage_alone_is_refused_with_exit_1(tmp_path: Path, cli: Any) -> None:
    run_dir = tmp_path / "run"
    res = cli("stage", "adversarial", "-c", _write(tmp_path, TINY_GEN), "--run-dir", run_dir)
    assert res.code == 1, res.out + res.err
    stage = json.loads((run_dir / "summary.json").read_text())["stages"][-1]
    assert stage["name"] == "adversarial" and stage["status"] == "failed"
    message = stage["diagnoses"][0]["message"]
    assert stage["diagnoses"][0]["code"] == "prerequisite_not_passed"
    assert "overfit-one not run" in message and "full-data not run" in message
    assert not (run_dir / "adversarial" / "checkpoint.pt").exists()  # nothing was trained


def test_adversarial_stage_is_refused_after_a_failed_l1_stage(tmp_path: Path, cli: Any) -> None:
    """--keep-going past a failed overfit-one: the critic is still not added."""
    run_dir = tmp_path / "run"
    res = cli("run", _write(tmp_path, TINY_GEN), "--run-dir", run_dir, "--keep-going", "-q")
    assert res.code == 1
    stages = {s["name"]: s for s in json.loads((run_dir / "summary.json").read_text())["stages"]}
    assert stages["overfit-one"]["status"] == "failed"  # 2 steps cannot reach L1 0.01
    refused = stages["adversarial"]
    assert [d["code"] for d in refused["diagnoses"]] == ["prerequisite_not_passed"]
    assert "overfit-one failed" in refused["diagnoses"][0]["message"]
    assert not (run_dir / "adversarial" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_tiny_generative_ladder_passes_every_stage(tmp_path: Path, cli: Any) -> None:
    """L1 stages, then the critic: every stage passes, the critic is checkpointed, the GAN
    values are logged per step and the pictures are written."""
    config = {
        **TINY_GEN,
        "data": {**TINY_GEN["data"], "args": {**TINY_GEN["data"]["args"], "num_train": 64}},
        "model": {"name": "pix2pix_unet", "args": {"width": 16}},
        "adversarial": {"critic": {"args": {"width": 8, "depth": 2}}, "critic_steps": 3},
        "stages": {
            "overfit-one": {"steps": 200, "gate": {"train_loss_below": 0.05}},
            "overfit-few": {"samples": 4, "steps": 300, "gate": {"train_loss_below": 0.05}},
            "full-data": {"epochs": 15},
            "adversarial": {"epochs": 5, "optim": {"lr": 3.0e-4}},
        },
    }
    run_dir = tmp_path / "run"
    res = cli("run", _write(tmp_path, config), "--run-dir", run_dir, "-q")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert res.code == 0, summary
    assert [s["name"] for s in summary["stages"]][-2:] == ["full-data", "adversarial"]
    adv = summary["stages"][-1]["figures"]
    assert adv["val_l1"] <= adv["l1_only_val_l1"] * 1.1
    curves = read_curves(run_dir / "adversarial")
    steps = len(curves.get_curve("train/loss"))
    for tag in ("gan/l1", "gan/adv", "gan/critic", "gan/wasserstein", "gan/gp", "gan/distance"):
        assert len(curves.get_curve(tag)) == steps, tag
    assert list(curves.get_curve("metrics/l1").steps) == [0, steps]
    state = torch.load(run_dir / "adversarial" / "checkpoint.pt", weights_only=True)
    assert set(state["train_step"]) == {"critic", "critic_optimizer"}
    full = read_curves(run_dir / "full-data")
    assert full.get_curve("baseline/val_loss").last > full.get_curve("metrics/l1").last
    assert all((run_dir / s / "samples.png").exists() for s in ("full-data", "adversarial"))


# --- data, baseline and config --------------------------------------------------------------


@pytest.mark.parametrize(("kind", "channels"), [("grey", 1), ("edges", 1), ("masked", 4)])
def test_shapes_pix2pix_pairs_an_input_with_its_colour_image(kind: str, channels: int) -> None:
    train, val = shapes_pix2pix(num_train=16, num_val=8, size=16, input_kind=kind)
    x, y = train[3]
    assert x.shape == (channels, 16, 16) and y.shape == (3, 16, 16)
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    # standardised with the train statistics
    assert train.inputs.mean().abs() < 1e-4 and (train.inputs.std() - 1).abs() < 0.05
    again, _ = shapes_pix2pix(num_train=16, num_val=8, size=16, input_kind=kind)
    assert torch.equal(again.inputs, train.inputs)  # a pure function of its arguments
    assert not any(torch.equal(val.targets[i], t) for i in range(8) for t in train.targets)


def test_mean_image_baseline_is_the_val_l1_of_the_train_mean_image() -> None:
    train, val = shapes_pix2pix(num_train=24, num_val=8, size=16)
    stats = data_stats(train, val, labels=False, num_workers=0, seed=0, cache=None)
    mean_image = train.targets.double().mean(dim=0)
    expected = float((val.targets.double() - mean_image).abs().mean())
    baseline = task_class("generative")().baseline_loss(stats, None)
    assert baseline == pytest.approx(expected, rel=1e-6)


def test_pix2pix_config_is_valid_and_adversarial_keys_are_checked(tmp_path: Path) -> None:
    loaded = load_config(ROOT / "configs" / "pix2pix.yaml")
    plan = loaded.plan("adversarial")
    assert plan.knobs.init_from == "full-data"
    assert plan.config.adversarial.critic.name == "conv_critic"
    bad = _write(tmp_path, {**TINY_GEN, "adversarial": {"critic_stepz": 2}})
    with pytest.raises(Exception, match=r"adversarial\.critic_stepz.*critic_steps"):
        load_config(bad)


def test_sample_picture_goes_to_tensorboard_and_the_report(tmp_path: Path) -> None:
    train, val = shapes_pix2pix(num_train=8, num_val=8, size=16)
    with Logbook.files(tmp_path) as logbook:
        _observer(pix2pix_unet(1, 3, width=8), (train, val), tmp_path, logbook).start()
    rows = {tag: c.last for tag, c in read_curves(tmp_path).items()}
    assert set(rows) == {"metrics/l1", "metrics/psnr"} and rows["metrics/l1"] > 0
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    (image,) = events.Images("samples")
    # one row per sample: input | target | output, each 16 px tile upscaled to 64 px
    assert (image.height, image.width) == (8 * 66 + 2, 3 * 66 + 2)
    assert (tmp_path / "samples.png").stat().st_size > 0
