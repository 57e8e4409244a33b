"""Faulty data sets and models through the real CLI: each exits 2 with one message that
names the problem (the split and index, the worker, the input shape), never a traceback.

The faults live in a real user module (``h4_faulty.py``, written beside the config), the
way a user's own ``module:function`` would.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlsteps.errors import DataError

FAULTY = '''
import os
import signal

import torch
from torch import nn
from torch.utils.data import Dataset, get_worker_info


class Items(Dataset):
    """32 small images with a 2-class label; item ``bad`` misbehaves as ``mode`` says."""

    num_classes, in_channels = 2, 3

    def __init__(self, n=32, bad=None, mode="raise", seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g)
        self.bad, self.mode, self.reads = bad, mode, 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i == self.bad:
            self.reads += 1
            if self.mode == "raise":
                raise ValueError(f"cannot decode img_{i}.png")
            if self.mode == "crash" and get_worker_info() is not None:
                os.kill(os.getpid(), signal.SIGSEGV)  # a decoder's segfault
            if self.mode == "single":
                return self.x[i]
            if self.mode == "label":
                return self.x[i], torch.tensor(7)
            if self.mode == "later" and self.reads > 1:
                raise OSError(f"img_{i}.png vanished")
        return self.x[i], self.y[i]


def empty():
    return Items(0), Items(8, seed=1)


def raising():
    return Items(bad=13), Items(8, seed=1)


def crashing():
    return Items(bad=13, mode="crash"), Items(8, seed=1)


def not_a_pair():
    return Items(bad=13, mode="single"), Items(8, seed=1)


def label_out_of_range():
    return Items(bad=13, mode="label"), Items(8, seed=1)


def fails_on_a_later_read():
    return Items(bad=5, mode="later"), Items(8, seed=1)


def one_dataset():
    return Items()


def data_raises(root="/data/missing"):
    raise FileNotFoundError(root)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 2))


def wrong_input_size():
    return nn.Sequential(nn.Flatten(), nn.Linear(100, 2))


def not_a_module():
    return "mlp"
'''


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("user")
    (directory / "h4_faulty.py").write_text(textwrap.dedent(FAULTY))
    return directory


def _config(user_dir: Path, data: str, model: str = "h4_faulty:mlp", workers: int = 0) -> Path:
    config: dict[str, Any] = {
        "task": "classification",
        "device": "cpu",
        "data": {"name": f"h4_faulty:{data}", "batch_size": 8, "num_workers": workers},
        "model": {"name": model},
        "stages": {"full-data": {"steps": 6}},
    }
    path = user_dir / f"{data}-{model.split(':')[-1]}-{workers}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _one_message(result: Any, *parts: str) -> str:
    assert result.code == 2, result.err
    assert "Traceback" not in result.err and "Caught " not in result.err
    (line,) = [x for x in result.err.splitlines() if x.startswith("error:")]  # one line
    for part in parts:
        assert part in line, result.err
    return line


# (data function, model function, workers, command, what the message must name)
CASES = [
    ("empty", "mlp", 0, "check", ["train set", "empty"]),
    ("raising", "mlp", 0, "check", ["item 13", "ValueError", "cannot decode img_13.png"]),
    ("raising", "mlp", 2, "check", ["item 13", "cannot decode img_13.png", "worker"]),
    ("crashing", "mlp", 2, "check", ["DataLoader worker", "segfaults", "num_workers: 0"]),
    ("not_a_pair", "mlp", 0, "check", ["item 13", "(input, target) pair", "Tensor"]),
    ("one_dataset", "mlp", 0, "check", ["must return (train_dataset, val_dataset)"]),
    ("data_raises", "mlp", 0, "check", ["h4_faulty:data_raises", "FileNotFoundError"]),
    ("fails_on_a_later_read", "not_a_module", 0, "check", ["must return a torch.nn.Module"]),
    (
        "fails_on_a_later_read",
        "wrong_input_size",
        0,
        "check",
        ["batch of shape (", ", 3, 8, 8)", "mat1 and mat2"],
    ),
]


@pytest.mark.parametrize(("data", "model", "workers", "command", "expected"), CASES)
def test_faulty_data_or_model_exits_2_naming_it(
    cli, user_dir: Path, data: str, model: str, workers: int, command: str, expected: list[str]
) -> None:
    config = _config(user_dir, data, f"h4_faulty:{model}", workers)
    result = cli(
        command, config, "--run-dir", user_dir / f"run-{data}-{model}-{workers}", cwd=user_dir
    )
    _one_message(result, *expected)


def test_model_raising_on_the_first_training_batch_names_the_shapes(cli, user_dir: Path) -> None:
    """Without preflight (``dlsteps stage``) the first train step is where it shows."""
    config = _config(user_dir, "fails_on_a_later_read", "h4_faulty:wrong_input_size")
    run_dir = user_dir / "run-first-step"
    result = cli("stage", "full-data", "-c", config, "--run-dir", run_dir, cwd=user_dir)
    _one_message(result, "first training step", "(8, 3, 8, 8)", "mat1 and mat2")


def test_item_failing_during_training_names_split_and_index(cli, user_dir: Path) -> None:
    """Read fine by the data-stats pass, then gone: the error comes from the train loader."""
    config = _config(user_dir, "fails_on_a_later_read")
    run_dir = user_dir / "run-later-read"
    result = cli("stage", "full-data", "-c", config, "--run-dir", run_dir, cwd=user_dir)
    _one_message(result, "train item 5", "OSError", "img_5.png vanished")
    summary = (run_dir / "summary.json").read_text()
    assert '"status": "error"' in summary


def test_label_out_of_range_fails_preflight_with_exit_2(cli, user_dir: Path) -> None:
    """A data fault preflight diagnoses: exit 2 with the diagnosis, not an error line."""
    config = _config(user_dir, "label_out_of_range")
    run_dir = user_dir / "run-label"
    result = cli("check", config, "--run-dir", run_dir, cwd=user_dir)
    assert result.code == 2 and "Traceback" not in result.err
    summary = json.loads((run_dir / "summary.json").read_text())
    (diagnosis,) = [d for d in summary["stages"][0]["diagnoses"] if d["severity"] == "fail"]
    assert diagnosis["code"] == "label_out_of_range" and "[7]" in diagnosis["message"]


def test_debug_lets_the_error_through_with_its_traceback(cli, user_dir: Path) -> None:
    config = _config(user_dir, "raising")
    with pytest.raises(DataError, match="item 13") as info:
        cli("--debug", "check", config, "--run-dir", user_dir / "run-debug", cwd=user_dir)
    assert isinstance(info.value.__cause__, ValueError)  # the user's own exception, chained
