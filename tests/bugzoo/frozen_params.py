"""Bug: every parameter frozen (requires_grad_(False) meant for the backbone only,
applied to the whole model)."""

from __future__ import annotations

from zoo_common import mlp


def model():
    return mlp().requires_grad_(False)  # the bug
