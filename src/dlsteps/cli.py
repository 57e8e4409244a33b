"""``dlsteps``: a thin Typer layer. Each command parses, calls one library function and
maps errors to the documented exit codes (0 passed, 1 gate failed, 2 bad input,
130 interrupted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dlsteps.config import load_config
from dlsteps.console import verdict_table
from dlsteps.diagnoses import CATALOG, explain
from dlsteps.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError, did_you_mean
from dlsteps.runner import RunOptions, run_ladder
from dlsteps.stages import GENERATIVE_TOP, LADDER

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Walk a deep-learning project up a ladder of gated stages.",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
_state = {"debug": False}

SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="dotted KEY=VALUE override, e.g. optim.lr=3e-4")
]
RunDirOpt = Annotated[
    Path | None, typer.Option("--run-dir", help="run directory (default: runs/<name>-<time>)")
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="print the summary as JSON on stdout, no progress")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")]
KeepOpt = Annotated[bool, typer.Option("--keep-going", help="run later stages after a failed gate")]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks for user errors")] = False,
) -> None:
    _state["debug"] = debug


def _execute(config: Path | None, sets: list[str] | None, opts: RunOptions, as_json: bool) -> None:
    loaded = load_config(config, sets or [])
    opts.quiet = opts.quiet or as_json
    summary, code = run_ladder(loaded, opts)
    if as_json:
        print(json.dumps(summary, indent=2))
    raise typer.Exit(code)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config, e.g. configs/seg.yaml")],
    from_stage: Annotated[str | None, typer.Option("--from", help="first stage to run")] = None,
    to_stage: Annotated[str | None, typer.Option("--to", help="last stage to run")] = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    device: DeviceOpt = None,
    keep_going: KeepOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Climb the ladder from preflight (or --from) to the top (or --to)."""
    opts = RunOptions(
        from_stage=from_stage,
        to_stage=to_stage,
        run_dir=run_dir,
        device=device,
        keep_going=keep_going,
        quiet=quiet,
    )
    _execute(config, set_, opts, as_json)


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="stage name or alias (overfit-1, overfit-10)")],
    config: Annotated[
        Path | None, typer.Option("-c", "--config", help="YAML config; default: built-in")
    ] = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run one stage alone (stages that start from a checkpoint need --run-dir of a run)."""
    opts = RunOptions(only=[name], run_dir=run_dir, device=device, quiet=quiet)
    _execute(config, set_, opts, as_json)


@app.command()
def check(
    config: Annotated[Path, typer.Argument(help="YAML config")],
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Preflight only: data, model and loss checked without training."""
    opts = RunOptions(only=["preflight"], run_dir=run_dir, device=device)
    _execute(config, set_, opts, as_json)


@app.command()
def stages() -> None:
    """The ladder and what each gate checks."""
    table = Table(title="the dlsteps ladder")
    table.add_column("#", justify="right")
    table.add_column("stage")
    table.add_column("what it does")
    table.add_column("gate")
    for i, s in enumerate(LADDER):
        table.add_row(str(i), s.name, s.summary, s.gate)
    table.add_row("4-5*", GENERATIVE_TOP.name, GENERATIVE_TOP.summary, GENERATIVE_TOP.gate)
    Console().print(table)
    Console().print("* task: generative replaces augment and scale-up by adversarial.")


@app.command("explain")
def explain_cmd(
    code: Annotated[str, typer.Argument(help="a diagnosis code, e.g. input_ignored")],
) -> None:
    """The long form of a diagnosis: what it means, likely causes, what to try first."""
    if code not in CATALOG:
        raise UserError(
            f"unknown diagnosis code '{code}'.{did_you_mean(code, CATALOG)} "
            f"Codes: {', '.join(CATALOG)}"
        )
    Console().print(explain(code))


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """The verdict table of a finished (or interrupted) run."""
    summary = _read_summary(run_dir)
    Console().print(verdict_table(summary))


def _read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.exists():
        raise UserError(f"{run_dir}: no summary.json; is this a dlsteps run directory?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc


def main() -> None:
    """Console-script entry point: user errors become one line and exit 2."""
    try:
        code = app(standalone_mode=False)  # click returns the exit code instead of raising
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except UserError as exc:
        if _state["debug"]:
            raise
        err.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.UsageError):
            exc.show()
            sys.exit(EXIT_USAGE)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(EXIT_INTERRUPTED)
        raise
