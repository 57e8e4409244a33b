"""task: language_model with its built-ins: text_files split by file, tiny_gpt (causal,
under 1M parameters, no dropout), perplexity and the unigram baseline, generations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dlsteps.data.stats import data_stats
from dlsteps.data.text_files import split_by_file, stdlib_sources, text_files
from dlsteps.models.gpt import tiny_gpt
from dlsteps.observe.metrics import TokenMetrics
from dlsteps.tasks import task_class

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus():
    return text_files(block_size=32, max_chars=30_000, val_chars=8_000)


def test_the_split_is_by_file_and_the_same_every_time(corpus) -> None:
    train, val = corpus
    assert train.files and val.files and not set(train.files) & set(val.files)
    files = stdlib_sources()
    val_files = split_by_file(files)[1]  # by a hash of each name: not by position
    assert sorted(split_by_file(list(reversed(files)))[1]) == sorted(val_files)
    assert 0.03 < len(val_files) / len(files) < 0.25
    x, y = train[3]
    assert x.shape == y.shape == (32,) and torch.equal(x[1:], y[:-1])  # y: the next token
    assert "def " in train.decode(train.ids[:5000].tolist())
    byte_train, _ = text_files(level="byte", block_size=32, max_chars=2_000, val_chars=500)
    assert byte_train.num_classes == 256


def test_tiny_gpt_is_small_causal_and_plain() -> None:
    model = tiny_gpt(num_classes=100)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    ids = torch.randint(0, 100, (2, 16))
    assert model(ids).shape == (2, 100, 16)  # [B, V, T]
    task = task_class("language_model")()
    assert task.check_probe(model, ids, torch.roll(ids, -1, 1), model(ids)) == []


def test_perplexity_is_exp_of_the_cross_entropy_and_the_baseline_the_unigram(corpus) -> None:
    logits, y = torch.randn(4, 7, 10), torch.randint(0, 7, (4, 10))
    metrics = TokenMetrics()
    metrics.update(logits, y)
    values = metrics.compute().scalars
    ce = float(F.cross_entropy(logits, y))
    assert values["perplexity"] == pytest.approx(math.exp(ce), rel=1e-5)
    assert values["bits_per_token"] == pytest.approx(ce / math.log(2), rel=1e-5)
    train, val = corpus
    stats = data_stats(train, val, labels=True)
    task = task_class("language_model")()
    loss = task.baseline_loss(stats, None)
    train_ids = torch.cat([train[i][1] for i in range(len(train))])  # the targets
    val_ids = torch.cat([val[i][1] for i in range(len(val))])
    classes = int(max(train_ids.max(), val_ids.max())) + 1
    counts = torch.bincount(train_ids, minlength=classes).double() + 0.5  # add-half
    probs = counts / counts.sum()
    assert loss == pytest.approx(float(-probs[val_ids].log().mean()), rel=1e-6)
    perplexity, se = task.baseline_metric(stats, "perplexity")
    assert perplexity == pytest.approx(math.exp(loss)) and 0 < se < 0.05 * perplexity


@pytest.mark.slow
def test_a_tiny_char_model_climbs_to_full_data_and_shows_its_generations(
    cli, write_config, tmp_path
) -> None:
    config = write_config(
        {
            "task": "language_model",
            "data": {
                "name": "text_files",
                "args": {"block_size": 32, "max_chars": 60_000, "val_chars": 10_000},
                "batch_size": 32,
            },
            "model": {"name": "tiny_gpt", "args": {"d_model": 48, "n_layers": 2, "n_heads": 2}},
            "optim": {"name": "adamw", "lr": 0.003},
            "stages": {
                "overfit-one": {"steps": 200},
                "overfit-few": {"steps": 400, "gate": {"train_loss_below": 0.05}},
                "full-data": {"epochs": 3},
            },
        }
    )
    result = cli("run", config, "--run-dir", tmp_path / "run", "--quiet")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    statuses = {s["name"]: s["status"] for s in summary["stages"]}
    assert result.code == 0, summary["stages"]
    assert statuses == {  # no augment stage in a language model's ladder
        "preflight": "passed", "overfit-one": "passed", "overfit-few": "passed",
        "full-data": "passed", "scale-up": "skipped",
    }  # fmt: skip
    full = {s["name"]: s for s in summary["stages"]}["full-data"]["figures"]
    assert full["best_val_loss"] < full["baseline_val_loss"]
    assert full["primary_metric"]["name"] == "perplexity"
    samples = (tmp_path / "run" / "full-data" / "samples.txt").read_text()
    assert "⟦" in samples and len(samples) > 200
    assert "sample generations" in (tmp_path / "run" / "report.html").read_text()
    preflight = summary["stages"][0]
    assert preflight["diagnoses"] == []  # silent on a correct pipeline
    assert preflight["figures"]["expected_init_loss"] == pytest.approx(
        math.log(full_vocab(tmp_path))
    )


def full_vocab(tmp_path: Path) -> int:
    """The vocabulary the run's model was built for (its output channels)."""
    return json.loads((tmp_path / "run" / "preflight" / "verdict.json").read_text())["figures"][
        "output_shape"
    ][0]
