"""Shared test helpers: run the real CLI in-process, write tiny configs, read logbooks."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

# Two pytest workers share two cores: one torch thread each avoids oversubscription.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]

TINY_SEG: dict[str, Any] = {
    "name": "tiny",
    "task": "segmentation",
    "seed": 0,
    "data": {
        "name": "shapes",
        "args": {"num_train": 64, "num_val": 16, "size": 16, "num_classes": 3, "max_shapes": 2},
        "batch_size": 8,
    },
    "model": {"name": "tiny_unet", "args": {"width": 16}},
    "optim": {"name": "adam", "lr": 0.003},
    "stages": {
        "overfit-one": {"steps": 150},
        "overfit-few": {"samples": 4, "steps": 300},
        "full-data": {"epochs": 5},
    },
}


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run ``dlsteps ARGS`` through the console-script entry point, in this process."""
    from dlsteps.cli import main

    def run(*args: str, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["dlsteps", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config mapping (default: the tiny segmentation config) to a YAML file."""

    def write(
        config: dict[str, Any] | None = None, name: str = "tiny.yaml", **overrides: Any
    ) -> Path:
        data = dict(config if config is not None else TINY_SEG)
        data.update(overrides)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write
