"""The ``adversarial`` stage: the L1 generator continued with a Wasserstein critic.

The method: "always start without a discriminator loss; do a simple L1 regression first;
only once that works, add the D". So the stage is refused unless overfit-one, overfit-few
and full-data passed (its prerequisites in ``ladder.stages``), it starts from the full-data
checkpoint, and it keeps the L1 term in the generator's loss. The critic is trained with
WGAN-GP (Gulrajani et al. 2017): ``critic_steps`` critic updates per generator step, each
on the step's batch with fresh interpolation points, Adam with betas (0, 0.9) as in the
paper.

``AdversarialStep`` has the call signature of ``engine.SupervisedStep``, so the one loop
in ``engine.fit`` trains it: ``train/loss`` stays the generator's L1 (comparable with the
L1 stages' curves) and the GAN's own values come back as extras under ``gan/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from dlsteps.config.schema import Config
from dlsteps.errors import ConfigError, ModelError
from dlsteps.models.registry import CRITICS, build_model
from dlsteps.train.steps import grad_norm

CRITIC_BETAS = (0.0, 0.9)  # WGAN-GP: no first-moment momentum for the critic


def gradient_penalty(
    critic: nn.Module, condition: torch.Tensor, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of (‖∇ critic(condition, x̂)‖₂ − 1)², x̂ on the real–fake segment.

    One uniform mixing weight per sample; the graph is kept (``create_graph``) so the
    penalty's own gradient reaches the critic's weights.
    """
    eps = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device)  # (B, 1, ...)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    scores = critic(condition, mixed)  # (B,)
    (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grads.flatten(1).norm(dim=1) - 1) ** 2).mean()


class AdversarialStep:
    """One generator step preceded by ``critic_steps`` critic steps; device tensors only."""

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        optimizer: torch.optim.Optimizer,
        critic_optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        *,
        critic_steps: int,
        gp_weight: float,
        l1_weight: float,
        autocast: contextlib.AbstractContextManager | None = None,
        grad_clip: float | None = None,
    ) -> None:
        self.generator, self.critic = generator, critic
        self.optimizer, self.critic_optimizer = optimizer, critic_optimizer
        self.loss_fn = loss_fn
        self.critic_steps, self.gp_weight, self.l1_weight = critic_steps, gp_weight, l1_weight
        self.autocast = autocast or contextlib.nullcontext()
        self.grad_clip = grad_clip
        self.params = [p for p in generator.parameters() if p.requires_grad]
        self.critic_params = [p for p in critic.parameters() if p.requires_grad]

    def __call__(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        critic_loss, wasserstein, gp, critic_norm, distance = self._train_critic(x, y)
        self.critic.requires_grad_(False)  # the generator step needs no critic gradients
        try:
            with self.autocast:
                fake = self.generator(x)  # (B, C, H, W) images
                l1 = self.loss_fn(fake, y)
                adv = -self.critic(x, fake).float().mean()
            loss = self.l1_weight * l1 + adv
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = grad_norm(self.params, self.grad_clip)
            self.optimizer.step()
        finally:
            self.critic.requires_grad_(True)
        extras = {
            "gan/l1": l1.detach(),
            "gan/adv": adv.detach(),
            "gan/critic": critic_loss,
            "gan/wasserstein": wasserstein,
            "gan/gp": gp,
            "gan/critic_grad_norm": critic_norm,
            "gan/distance": distance,
        }
        return l1.detach(), norm, extras

    def _train_critic(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``critic_steps`` updates; returns the means of critic loss, W estimate, penalty,
        the last gradient norm and the mean L2 distance between real and generated images,
        which bounds the W estimate of a 1-Lipschitz critic (device tensors: no host sync)."""
        with torch.no_grad(), self.autocast:
            fake = self.generator(x).float()  # fixed while the critic trains
        distance = (y.float() - fake).flatten(1).norm(dim=1).mean()
        sums = torch.zeros(3, device=y.device)
        norm = torch.zeros((), device=y.device)
        for _ in range(self.critic_steps):
            with self.autocast:
                real_score = self.critic(x, y).float().mean()
                fake_score = self.critic(x, fake).float().mean()
            wasserstein = real_score - fake_score
            gp = gradient_penalty(self.critic, x, y.float(), fake)
            loss = -wasserstein + self.gp_weight * gp
            self.critic_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = grad_norm(self.critic_params, None)
            self.critic_optimizer.step()
            sums += torch.stack([loss, wasserstein, gp]).detach()
        mean = sums / self.critic_steps
        return mean[0], mean[1], mean[2], norm, distance

    def state_dict(self) -> dict[str, Any]:
        """What the stage checkpoint adds to the generator's state."""
        return {
            "critic": self.critic.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a resumed stage with the critic it had."""
        self.critic.load_state_dict(state["critic"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])


def build_step(
    config: Config,
    generator: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    train: Dataset,
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
) -> AdversarialStep:
    """The critic from ``adversarial.critic`` (its ``in_channels`` = input + target
    channels, read off one train item) and the step that trains both."""
    if device.type == "cuda" and config.precision == "16":
        raise ConfigError(
            "precision: '16' needs loss scaling, which the adversarial stage does not do; "
            "use 'bf16' or '32'"
        )
    knobs = config.adversarial
    x, y = train[0]
    implied = {"in_channels": int(x.shape[0]) + int(y.shape[0])}
    critic = build_model(
        knobs.critic.name, knobs.critic.args, implied, CRITICS, "adversarial.critic"
    ).to(device)
    try:
        with torch.no_grad():
            scores = critic(x[None].to(device), y[None].to(device))
    except Exception as exc:
        raise ModelError(
            f"adversarial.critic: {knobs.critic.name} failed on an (input, target) pair of "
            f"shapes {tuple(x.shape)}, {tuple(y.shape)}: {type(exc).__name__}: {exc}"
        ) from exc
    if scores.shape != (1,):
        raise ModelError(
            f"adversarial.critic: {knobs.critic.name} must return one score per sample "
            f"(shape [B]), got {tuple(scores.shape)} for a batch of 1"
        )
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=knobs.critic_lr, betas=CRITIC_BETAS)
    return AdversarialStep(
        generator,
        critic,
        optimizer,
        critic_optimizer,
        loss_fn,
        critic_steps=knobs.critic_steps,
        gp_weight=knobs.gp_weight,
        l1_weight=knobs.l1_weight,
        autocast=autocast,
        grad_clip=config.optim.grad_clip,
    )
