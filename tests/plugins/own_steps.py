"""A project with its own training step (imported via "own_steps:NAME"): a model of two
inputs, a data set of dict items, and steps that read them; one step is broken."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


class PairsOfVectors(Dataset):
    """Items ``{"left": (8,), "right": (8,), "label": int}``; the label needs both sides."""

    num_classes = 2

    def __init__(self, n: int, seed: int, split: int) -> None:
        w = torch.randn(2, 8, generator=torch.Generator().manual_seed(seed))
        gen = torch.Generator().manual_seed(seed * 101 + split + 1)
        self.left, self.right = torch.randn(n, 8, generator=gen), torch.randn(n, 8, generator=gen)
        self.label = ((self.left @ w[0]) * (self.right @ w[1]) > 0).long()

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"left": self.left[i], "right": self.right[i], "label": self.label[i]}


def pairs(seed: int = 0, n_train: int = 512, n_val: int = 128) -> tuple[Dataset, Dataset]:
    return PairsOfVectors(n_train, seed, 0), PairsOfVectors(n_val, seed, 1)


class TwoTowers(nn.Module):
    """Each input through its own layer, then a head on both."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.left, self.right = nn.Linear(8, hidden), nn.Linear(8, hidden)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(2 * hidden, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.left(left), self.right(right)], dim=1))


def two_towers(hidden: int = 32) -> nn.Module:
    return TwoTowers(hidden)


def step(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(batch["left"], batch["right"])
    return F.cross_entropy(logits, batch["label"]), logits


def detached_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Broken: the loss is computed from a detached copy of the output."""
    logits = model(batch["left"], batch["right"]).detach()
    return F.cross_entropy(logits, batch["label"])


def no_return_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> None:
    """Broken: computes the loss and forgets to return it."""
    F.cross_entropy(model(batch["left"], batch["right"]), batch["label"])
