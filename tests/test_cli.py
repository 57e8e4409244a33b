"""First contact with the command line: it answers at once, reads the way it is typed,
says each thing once and in the words of what the user wrote."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SEG

from dlsteps import __version__
from dlsteps.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _error_line(err: str) -> str:
    (line,) = re.findall(r"^error: .*$", err, re.MULTILINE)
    return line


def test_version_prints_the_version(cli) -> None:
    result = cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"dlsteps {__version__}"


def test_debug_after_the_command_shows_the_traceback(cli, write_config) -> None:
    bad = write_config(optim={"name": "adam", "lrr": 1})
    assert cli("check", bad).code == 2  # without --debug: one line, exit 2
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        cli("check", bad, "--debug")
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        cli("--debug", "check", bad)


def test_a_set_mistake_names_the_set_not_the_file(cli, write_config, tmp_path: Path) -> None:
    config = write_config()
    result = cli("check", config, "--set", "optim.lrr=1", "--run-dir", tmp_path / "r")
    line = _error_line(result.err)
    assert line.startswith("error: --set optim.lrr=1: unknown key 'optim.lrr'.")
    assert "Did you mean 'lr'" in line and str(config) not in line
    # an alias in the key is still the user's --set
    line = _error_line(cli("check", config, "--set", "stages.overfit-1.steps=0").err)
    assert line.startswith("error: --set stages.overfit-1.steps=0: stages.overfit-one.steps")
    # a mistake in the file still names the file, even with a --set beside it
    bad = write_config(optim={"name": "adam", "lrr": 1}, name="bad.yaml")
    line = _error_line(cli("check", bad, "--set", "optim.lr=0.1").err)
    assert line.startswith(f"error: {bad}: unknown key 'optim.lrr'")


@pytest.mark.parametrize("typed", ["NAN_LOSS", "Nan_Loss", "nan-loss", " nan_loss"])
def test_explain_reads_a_code_however_it_is_cased(cli, typed: str) -> None:
    result = cli("explain", typed)
    assert result.code == 0, result.err
    assert result.out.startswith("nan_loss: ")


def test_explain_suggests_the_nearest_code(cli) -> None:
    result = cli("explain", "Nan-Los")
    assert result.code == 2
    assert "Did you mean 'nan_loss'?" in _error_line(result.err)


def test_a_bad_stage_name_names_what_was_typed(cli) -> None:
    line = _error_line(cli("stage", "overfit-2").err)
    assert line.startswith("error: dlsteps stage NAME: unknown stage 'overfit-2'")
    assert "--stage" not in line  # `dlsteps stage` has no such option
    assert "--to: unknown stage" in _error_line(cli("run", "x.yaml", "--to", "ful-data").err)


def test_help_shows_no_bool_type_and_one_line_per_command(cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # wide: every summary fits on its row
    top = cli("--help")
    assert top.code == 0 and "<bool>" not in top.out
    panel = top.out.split("Commands")[1].split("╰")[0]
    rows = [line.split()[1] for line in panel.splitlines()[1:] if line.startswith("│")]
    # one row per command: no summary spills onto a row of its own
    assert rows == [
        "run",
        "stage",
        "check",
        "stages",
        "explain",
        "report",
        "profile",
        "lr-find",
        "init",
        "ablate",
    ]
    for command in ("run", "stage", "check", "profile", "ablate"):
        out = cli(command, "--help").out
        assert "<bool>" not in out and "--help" in out, command
        assert "<list[str]>" not in out, command


def test_tables_never_cut_a_figure_at_80_columns() -> None:
    from rich.console import Console

    from dlsteps.report.console import verdict_table

    figures = {
        "parameters": 117092,
        "init_loss": 1.3862,
        "final_train_loss": 0.00871,
        "reached_at_step": 212,
        "best_val_loss": 0.4321,
        "baseline_val_loss": 0.9876,
        "median_batch_seconds": 0.01234,
        "steps": 160,
        "primary_metric": {"name": "miou", "value": 0.5432, "higher_is_better": True},
    }
    summary = {
        "run_dir": "runs/seg-20261202-101500",
        "stages": [
            {
                "name": "full-data",
                "status": "failed",
                "seconds": 123.4,
                "figures": figures,
                "diagnoses": [
                    {"code": "worse_than_baseline", "severity": "fail"},
                    {"code": "unexpected_init_loss", "severity": "warn"},
                ],
            }
        ],
    }
    console = Console(width=80, record=True)
    console.print(verdict_table(summary))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    cells = " ".join(line.split("│")[4] for line in text.splitlines() if line.count("│") >= 5)
    for item in (
        "worse_than_baseline,",
        "unexpected_init_loss",
        "parameters=117092,",
        "median_batch_seconds=0.01234,",
        "val_miou=0.5432",
    ):
        assert item in cells.split(), (item, text)
    assert "117,092" not in text


def test_no_run_directory_when_the_config_does_not_build(cli, tmp_path: Path) -> None:
    config = {**TINY_SEG, "model": {"name": "tiny_unet", "args": {"widht": 4}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("run", path, cwd=tmp_path)
    assert result.code == 2 and "model.args" in _error_line(result.err)
    assert not (tmp_path / "runs").exists()


def test_ablate_takes_run_dir_like_run_and_dir_still(cli, write_config, tmp_path: Path) -> None:
    config = write_config()
    for flag in ("--run-dir", "--dir"):
        where = tmp_path / flag.strip("-")
        result = cli(
            "ablate", config, "--grid", "optim.lr=1e-2,1e-3", "--parallel", "0", flag, where
        )
        assert result.code == 0, result.err
        assert (where / "study.journal").exists()


FIRST_LINE = """
import sys
from rich.console import Console
import dlsteps.cli as cli

seen = []
class Recording(Console):
    def print(self, *args, **kwargs):
        seen.append("torch" in sys.modules)
        super().print(*args, **kwargs)

cli.err = Recording(stderr=True)
sys.argv = ["dlsteps", "check", sys.argv[1], "--run-dir", sys.argv[2]]
try:
    cli.main()
except SystemExit:
    pass
print("FIRST", seen[:1])
"""


def test_run_says_its_first_line_before_torch_is_imported(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_SEG))
    out = subprocess.run(
        [sys.executable, "-c", FIRST_LINE, str(config), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert "FIRST [False]" in out.stdout, out.stdout + out.stderr
    assert "dlsteps: tiny from" in out.stderr and "preflight" in out.stderr


def test_the_ablation_leaderboard_fits_80_columns_with_every_figure_whole() -> None:
    from rich.console import Console

    from dlsteps.ablate import results
    from dlsteps.ablate.study import StudySpec

    board = [
        results.Row(
            n + 1,
            n,
            "complete",
            0.123456 + n,
            160,
            None,
            "passed",
            {"optim.lr": 10.0 ** -(n + 2), "model.args.width": 8 * (n + 1)},
            f"t/{n}",
            "",
            {},
        )
        for n in range(3)
    ]
    spec = StudySpec(
        {}, None, "full-data", "val/loss", False, 5, {}, {}, "tpe", 3, {"name": "none"}, 0, "x"
    )
    console = Console(width=80, record=True)
    console.print(results.table(board, spec, "seg-ablate"))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    cells = [c.strip() for line in text.splitlines() for c in line.split("│")]
    assert {"0.1235", "1.123", "0.01", "0.001", "0.0001", "24", "160"} <= set(cells)
    assert "…" not in text  # a long header folds instead of losing its end
