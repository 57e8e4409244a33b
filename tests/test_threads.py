"""Torch threads on a shared machine: ``threads: auto`` keeps half the cores free, says
what it chose once per run, leaves ``OMP_NUM_THREADS`` alone, and a stage may differ.

The speed this buys is measured by ``scripts/bench_threads.py``, not timed here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_SEG

from dlsteps.config import build_config
from dlsteps.train.threads import RunThreads, auto_count, choose


@pytest.mark.parametrize(
    ("cores", "workers", "expected"),
    [(1, 0, 1), (2, 0, 1), (4, 0, 2), (16, 0, 8), (16, 12, 4), (8, 7, 1), (2, 4, 1)],
)
def test_auto_keeps_half_the_cores_and_the_workers_cores_free(
    cores: int, workers: int, expected: int
) -> None:
    assert auto_count(cores, workers) == expected
    assert choose("auto", workers, cores=cores, env={}).count == expected


def test_omp_num_threads_set_means_auto_leaves_threads_alone() -> None:
    chosen = choose("auto", cores=16, env={"OMP_NUM_THREADS": "3"}, current=3)
    assert (chosen.count, chosen.left_alone) == (3, True)
    # a number in the config is the user's word, whatever the environment says
    assert choose(4, env={"OMP_NUM_THREADS": "3"}).count == 4


def test_the_run_gives_torch_its_thread_count_back() -> None:
    before = torch.get_num_threads()
    threads = RunThreads(before + 1)
    with threads:
        assert torch.get_num_threads() == before + 1
        assert (
            threads.for_stage(before + 2)
            == f"{before + 2} torch threads in this stage (threads: {before + 2})"
        )
        assert torch.get_num_threads() == before + 2
        assert threads.for_stage(before + 1) is None  # the next stage: the run's again
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    assert threads.announcement() is None  # the user chose: nothing to announce


def test_threads_is_a_config_key_overridable_per_stage() -> None:
    raw = {**TINY_SEG, "threads": 2, "stages": {"full-data": {"threads": 1}}}
    loaded = build_config(raw, "<test>")
    assert loaded.base.threads == 2
    assert loaded.plans["full-data"].config.threads == 1
    assert loaded.plans["overfit-one"].config.threads == 2
    assert build_config(dict(TINY_SEG), "<test>").base.threads == "auto"


def test_a_bad_threads_value_exits_2_naming_the_key(cli, write_config) -> None:
    result = cli("check", write_config(), "--set", "threads=0")
    assert result.code == 2
    assert "--set threads=0: threads" in result.err and "Traceback" not in result.err


def _threads_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("threads:")]


@pytest.mark.slow
def test_auto_says_its_choice_once_per_run_and_nothing_under_omp_num_threads(
    cli, write_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    stages = {
        "overfit-one": {"steps": 60},
        "overfit-few": {"samples": 4, "steps": 60, "threads": 1},
    }
    config = write_config(stages=stages)
    result = cli("run", config, "--to", "overfit-few", "--run-dir", tmp_path / "a")
    assert result.code in (0, 1), result.err
    (line,) = _threads_lines(result.err)  # once, though three stages ran
    assert line.startswith("threads: auto → ") and "cores" in line
    chosen = int(line.split("→ ")[1].split()[0])
    if chosen != 1:  # the stage's own setting differs from the run's: said in its notes
        assert "1 torch thread in this stage (threads: 1)" in result.err
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = cli("run", config, "--to", "overfit-one", "--run-dir", tmp_path / "b")
    assert result.code in (0, 1), result.err
    assert _threads_lines(result.err) == []
    # a machine setting, like the device: a resume on a busier machine may change it
    assert cli("run", "--resume", tmp_path / "b", "--set", "threads=1").code in (0, 1)
