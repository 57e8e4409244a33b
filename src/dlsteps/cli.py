"""``dlsteps``: a thin Typer layer. Each command parses, calls one library function and
maps errors to the documented exit codes (0 passed, 1 gate failed, 2 bad input,
130 interrupted).

Each command imports what it needs when it runs, so ``dlsteps --help``, ``stages`` and
``explain`` answer without importing torch or TensorBoard.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from dlsteps import __version__
from dlsteps.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError, did_you_mean
from dlsteps.train.world import ERROR_GRACE_SECONDS, is_main, world

if TYPE_CHECKING:
    from click import Context, Parameter


def _no_flag_types(params: list[Parameter]) -> list[Parameter]:
    """A flag takes no value, so ``--help`` shows no ``<bool>`` beside it."""
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _no_flag_types(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _no_flag_types(super().get_params(ctx))


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    help="Walk a deep-learning project up a ladder of gated stages.",
    pretty_exceptions_enable=False,
)
command = app.command(cls=_Command)
err = Console(stderr=True)
_state = {"debug": False}

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", metavar="KEY=VALUE", help="dotted override, e.g. optim.lr=3e-4 (repeatable)"
    ),
]
RunDirOpt = Annotated[
    Path | None,
    typer.Option("--run-dir", metavar="DIR", help="run directory (default: runs/<name>-<time>)"),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", metavar="DEVICE", help="auto | cpu | cuda | cuda:N")
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="print the summary as JSON on stdout, no progress")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")]
KeepOpt = Annotated[bool, typer.Option("--keep-going", help="run later stages after a failed gate")]


def _version(value: bool) -> None:
    if value:
        print(f"dlsteps {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="show tracebacks for user errors (also after the command)"),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    _state["debug"] = debug


def _execute(config: Path | None, sets: list[str] | None, as_json: bool, **options: Any) -> None:
    """Load the config, say what is about to happen, then import the heavy machinery."""
    from dlsteps.config import load_config

    loaded = load_config(config, sets or [])
    options["quiet"] = options.get("quiet", False) or as_json
    if not options["quiet"] and is_main():
        err.print(f"dlsteps: {_plan(loaded, options)} (starting torch …)", highlight=False)
    from dlsteps.ladder.runner import RunOptions, run_ladder
    from dlsteps.train import distributed

    try:
        summary, code = run_ladder(loaded, RunOptions(**options))
    finally:
        distributed.shutdown()  # leave the DDP process group (a no-op in one process)
    if as_json and is_main():
        print(json.dumps(summary, indent=2))
    # rank 0 owns the verdict and its exit code: torchrun stops every process as soon as
    # one exits non-zero, which could cut rank 0 short while it still writes the summary
    raise typer.Exit(code if is_main() else 0)


def _plan(loaded: Any, options: dict[str, Any]) -> str:
    """``seg from configs/seg.yaml: preflight to full-data``: the run in one line."""
    source = loaded.source or "the built-in default config"
    if options.get("only"):
        what = ", ".join(options["only"])
    elif options.get("resume") is not None:
        what = f"resuming {options['resume']}"
    else:
        what = (
            f"{options.get('from_stage') or 'preflight'} to {options.get('to_stage') or 'the top'}"
        )
    return f"{loaded.name} from {source}: {what}"


def _stage_name(name: str | None, option: str) -> None:
    """A misspelt stage fails at once, naming what the user typed it into."""
    if name is not None:
        from dlsteps.ladder.stages import canonical_stage

        canonical_stage(name, option)


@command
def run(
    config: Annotated[
        Path | None,
        typer.Argument(
            metavar="CONFIG", help="YAML config, e.g. configs/seg.yaml; with --resume: optional"
        ),
    ] = None,
    from_stage: Annotated[
        str | None, typer.Option("--from", metavar="STAGE", help="first stage to run")
    ] = None,
    to_stage: Annotated[
        str | None, typer.Option("--to", metavar="STAGE", help="last stage to run")
    ] = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    device: DeviceOpt = None,
    keep_going: KeepOpt = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            metavar="DIR",
            help="continue the run in DIR: finished stages are kept, an interrupted or "
            "crashed one continues after its last checkpoint",
        ),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            metavar="N",
            help="processes on this machine, one per GPU (DDP via torch.distributed.run); "
            "several machines: torchrun --nnodes ... -m dlsteps run (see README)",
        ),
    ] = 1,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Climb the ladder from preflight (or --from) to the top (or --to)."""
    _stage_name(from_stage, "--from")
    _stage_name(to_stage, "--to")
    if nproc > 1:
        if world().size > 1:
            raise UserError("--nproc: this process was already launched by torchrun; drop it")
        from dlsteps.train.distributed import launch

        raise typer.Exit(launch(nproc, _without_nproc(sys.argv[1:])))
    if config is None:
        if resume is None:
            raise UserError("missing CONFIG: dlsteps run CONFIG, or dlsteps run --resume RUN_DIR")
        config = _run_dir(resume, existing=True).config_yaml  # the run's own resolved config
    _execute(
        config,
        set_,
        as_json,
        from_stage=from_stage,
        to_stage=to_stage,
        run_dir=run_dir,
        device=device,
        keep_going=keep_going,
        quiet=quiet,
        resume=resume,
    )


@command
def stage(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="stage name or alias (overfit-1, overfit-10)")
    ],
    config: Annotated[
        Path | None,
        typer.Option("-c", "--config", metavar="CONFIG", help="YAML config; default: built-in"),
    ] = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run one stage alone, in a new run or added to an existing one.

    With --run-dir RUN of an existing run, the stage joins it: its config and checkpoints
    (how a stage with init_from finds its start)."""
    _stage_name(name, "dlsteps stage NAME")
    opts: dict[str, Any] = {"only": [name], "device": device, "quiet": quiet}
    if run_dir is not None and _run_dir(run_dir).is_run():
        _execute(config or _run_dir(run_dir).config_yaml, set_, as_json, resume=run_dir, **opts)
    else:
        _execute(config, set_, as_json, run_dir=run_dir, **opts)


@command
def check(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config")],
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Preflight only: data, model and loss checked without training."""
    _execute(config, set_, as_json, only=["preflight"], run_dir=run_dir, device=device, quiet=quiet)


@command
def stages() -> None:
    """The ladder and what each gate checks."""
    from dlsteps.ladder.stages import GENERATIVE_LADDER, STANDARD_LADDER

    table = Table(title="the dlsteps ladder")
    table.add_column("#", justify="right")
    table.add_column("stage")
    table.add_column("what it does")
    table.add_column("gate")
    for i, s in enumerate(STANDARD_LADDER):
        table.add_row(str(i), s.name, s.summary, s.gate_text)
    replaced = [s for s in STANDARD_LADDER if s not in GENERATIVE_LADDER]
    first = STANDARD_LADDER.index(replaced[0])
    span = f"{first}-{first + len(replaced) - 1}*"
    for s in (s for s in GENERATIVE_LADDER if s not in STANDARD_LADDER):
        table.add_row(span, s.name, s.summary, s.gate_text)
    Console().print(table)
    names = " and ".join(s.name for s in replaced)
    Console().print(f"* task: generative replaces {names} by adversarial.")


@app.command("explain", cls=_Command)
def explain_cmd(
    code: Annotated[
        str, typer.Argument(metavar="CODE", help="a diagnosis code, e.g. input_ignored")
    ],
) -> None:
    """The long form of a diagnosis: what it means, likely causes, what to try first."""
    from dlsteps.judge.diagnoses import CATALOG, explain

    key = code.strip().lower().replace("-", "_")  # as printed, or as typed from memory
    if key not in CATALOG:
        raise UserError(
            f"unknown diagnosis code '{code}'.{did_you_mean(key, CATALOG)} "
            f"Codes: {', '.join(CATALOG)}"
        )
    Console().print(explain(key))


@command
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="a run directory")],
) -> None:
    """Re-judge a run from its logbook: verdict table here, plots in RUN_DIR/report.html."""
    from dlsteps.report.console import print_verdict
    from dlsteps.report.html import write_report

    summary, html, notes = write_report(_run_dir(run_dir))
    console = Console()
    print_verdict(console, summary)
    for note in notes:
        console.print(f"[yellow]{note}[/yellow]", highlight=False, soft_wrap=True)
    console.print(f"report: {html}", highlight=False, soft_wrap=True)


@command
def profile(
    config: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="YAML config, e.g. configs/seg.yaml")
    ],
    stage_name: Annotated[
        str, typer.Option("--stage", metavar="STAGE", help="training stage to profile")
    ] = "full-data",
    steps: Annotated[
        int, typer.Option("--steps", min=1, metavar="N", help="optimizer steps to run")
    ] = 50,
    trace: Annotated[
        bool, typer.Option("--trace", help="also write a torch.profiler trace for TensorBoard")
    ] = False,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    device: DeviceOpt = None,
) -> None:
    """A short run of one stage that prints its speed report.

    The report: data wait, compute, step time, throughput, peak memory and the
    bottleneck, with advice."""
    from dlsteps.judge.speed import format_speed
    from dlsteps.tools.profile import profile as profile_stage

    console = Console()
    console.print(f"profiling {steps} steps of {stage_name} ...", highlight=False)
    result = profile_stage(config, set_ or [], stage_name, steps, trace, run_dir, device)
    for line in format_speed(result.figures) or ["no step was timed"]:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"run directory: {result.run_dir}", highlight=False, soft_wrap=True)
    if result.top_ops:
        console.print(result.top_ops, markup=False, highlight=False, soft_wrap=True)
    if result.trace_dir is not None:
        console.print(
            f"trace: {result.trace_dir} (tensorboard --logdir {result.trace_dir} with "
            "torch-tb-profiler installed, or open the .pt.trace.json in ui.perfetto.dev)",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(EXIT_INTERRUPTED if result.interrupted else 0)


@app.command("lr-find", cls=_Command)
def lr_find_cmd(
    config: Annotated[Path, typer.Argument(help="YAML config, e.g. configs/seg.yaml")],
    on: Annotated[
        str, typer.Option("--on", help="few: overfit-few's batch; train: the train set")
    ] = "few",
    low: Annotated[float, typer.Option("--low", help="lowest learning rate")] = 1e-7,
    high: Annotated[float, typer.Option("--high", help="highest learning rate")] = 1.0,
    steps: Annotated[int, typer.Option("--steps", min=5, help="rates tried (one step each)")] = 100,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    device: DeviceOpt = None,
) -> None:
    """A learning-rate range test: the suggested rate and the loss-against-rate curve.

    The curve goes to TensorBoard and RUN_DIR/report.html; the model's weights are
    restored afterwards."""
    from dlsteps.tools.lr_find import lr_find

    result = lr_find(config, set_ or [], on, low, high, steps, run_dir, device)
    console = Console()
    for line in result.lines():
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"curve: {result.run_dir / 'report.html'}", highlight=False, soft_wrap=True)


@command
def init(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="project directory (created if missing)")
    ],
    task: Annotated[
        str, typer.Option("--task", help="classification | segmentation | regression | multilabel")
    ] = "classification",
    from_folder: Annotated[
        Path | None,
        typer.Option("--from-folder", help="your data folder: write a config that reads it"),
    ] = None,
) -> None:
    """Write a starter project, or a config that reads your image folder as it is.

    Without --from-folder: dlsteps.yaml, my_data.py and my_model.py, a working project
    of --task to edit. With --from-folder PATH: a dlsteps.yaml that reads PATH."""
    from dlsteps.tools.scaffold import scaffold

    written = scaffold(directory, task, from_folder)
    console = Console()
    for path in written:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    console.print(f"next: cd {directory} && dlsteps run dlsteps.yaml", soft_wrap=True)


@command
def ablate(
    config: Annotated[
        Path | None,
        typer.Argument(metavar="CONFIG", help="YAML config; not needed with --join or --resume"),
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            metavar="KEY=V1,V2",
            help="one axis of the grid, e.g. optim.lr=1e-2,1e-3 (repeatable)",
        ),
    ] = None,
    stage_name: Annotated[
        str | None,
        typer.Option(
            "--stage", metavar="STAGE", help="stage every trial runs (default: full-data)"
        ),
    ] = None,
    set_: SetOpt = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            "--parallel",
            min=0,
            metavar="N",
            help="worker processes on this machine; 0: only create the study (workers --join)",
        ),
    ] = None,
    no_prune: Annotated[
        bool, typer.Option("--no-prune", help="run every trial to its end (the baseline)")
    ] = False,
    pruner: Annotated[
        str | None,
        typer.Option(
            "--pruner", metavar="NAME", help="successive_halving | hyperband | median | none"
        ),
    ] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, metavar="N", help="search: number of trials")
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            "--dir",
            metavar="DIR",
            help="ablation directory (default: runs/<name>-ablate-<time>)",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            help="shared study storage: an Optuna database URL (postgresql://...) or a journal "
            "file path; default: a journal file in the ablation directory",
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option(
            "--study", metavar="NAME", help="name of the new study (default: the dir name)"
        ),
    ] = None,
    join: Annotated[
        str | None,
        typer.Option(
            "--join", metavar="STUDY", help="run trials of an existing STUDY in --storage"
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", metavar="DIR", help="continue the interrupted ablation in DIR"),
    ] = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Many variants at once (a grid or a search), the unpromising ones pruned early."""
    _stage_name(stage_name, "--stage")
    # imported here: Optuna is only needed by this command; the others start faster without
    from dlsteps.ablate import AblateRequest, run_ablation

    if pruner is not None and pruner not in ("successive_halving", "hyperband", "median", "none"):
        raise UserError(f"--pruner {pruner}: choose successive_halving, hyperband, median or none")
    result = run_ablation(
        AblateRequest(
            config=config,
            sets=set_ or [],
            grid=grid or [],
            stage=stage_name,
            parallel=parallel,
            no_prune=no_prune,
            pruner=pruner,
            trials=trials,
            directory=directory,
            storage=storage,
            study=study,
            join=join,
            resume=resume,
            device=device,
        )
    )
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    raise typer.Exit(result.exit_code)


def _run_dir(path: Path, existing: bool = False) -> Any:
    """The run directory at ``path``; ``existing``: refused, naming it, when it is missing."""
    from dlsteps.rundir.run import RunDir

    return RunDir.existing(path) if existing else RunDir(path)


def _without_nproc(args: list[str]) -> list[str]:
    """The command line again for each launched process, minus ``--nproc N``."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _debug_first(args: list[str]) -> list[str]:
    """``--debug`` is the root's option; written after the command it means the same."""
    if "--debug" not in args:
        return args
    return ["--debug", *(arg for arg in args if arg != "--debug")]


def main() -> None:
    """Console-script entry point: user errors become one line and exit 2."""
    try:
        # click returns the exit code instead of raising
        code = app(args=_debug_first(sys.argv[1:]), standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except UserError as exc:
        if _state["debug"]:
            raise
        if not is_main():
            # every rank meets the same error: rank 0 says it (and torchrun then stops this
            # process); only an error of this rank alone gets past the wait and is printed
            time.sleep(ERROR_GRACE_SECONDS)
        # soft_wrap: the terminal wraps it, so a path or key in it is never cut in two
        err.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if isinstance(exc, _click_exceptions().UsageError):
            exc.show()
            sys.exit(EXIT_USAGE)
        raise


def _click_exceptions() -> ModuleType:
    """click's exceptions module: typer >= 0.2x vendors click as ``typer._click``."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions
