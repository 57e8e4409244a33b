"""What the user sees while a run climbs: a live rich display on a terminal, plain
lines in a log file or CI, nothing under ``--json``/``--quiet``."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from dlsteps.judge.speed import format_speed

STATUS_STYLE = {
    "passed": "green",
    "failed": "red",
    "skipped": "dim",
    "error": "red",
    "interrupted": "yellow",
    "pruned": "yellow",
}


class Reporter:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal and not quiet
        self._progress: Progress | None = None
        self._task: Any = None
        self._last_line = 0
        self._first: tuple[int, float] | None = None  # (step, elapsed) of the first report
        self.every = 50

    def stage_started(self, stage: str, total: int, notes: list[str]) -> None:
        if self.quiet:
            return
        self.console.print(f"[bold]▶ {stage}[/bold] ({total} steps)")
        for note in notes:
            self.console.print(f"  [dim]· {note}[/dim]")
        if self.live:
            self._progress = Progress(
                TextColumn("  step {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("{task.fields[losses]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(stage, total=total, losses="")
        self._last_line = 0
        self._first = None

    def progress(self, p: Any) -> None:
        """``p``: the engine's ``Progress`` at a flush (step, total, losses, elapsed)."""
        if self.quiet:
            return
        val = f"{p.val_loss:.4f}" if p.val_loss is not None else "-"
        losses = f"train {p.train_loss:.4f}  val {val}"
        if self._first is None:
            self._first = (p.step, p.elapsed)
        if self._progress is not None:
            self._progress.update(self._task, completed=p.step, losses=losses)
        elif p.step - self._last_line >= self.every or p.step == p.total:
            self._last_line = p.step
            print(
                f"  step {p.step}/{p.total}  {losses}  {p.elapsed:.1f}s  eta {self._eta(p)}",
                file=sys.stderr,
                flush=True,
            )

    def _eta(self, p: Any) -> str:
        """Remaining time at the stage's pace since its first report (so neither warm-up
        nor a resumed stage's earlier steps skew it)."""
        first_step, first_elapsed = self._first or (p.step, p.elapsed)
        done, spent = p.step - first_step, p.elapsed - first_elapsed
        if done <= 0:  # one report so far: assume the stage started at step 0
            done, spent = max(p.step, 1), p.elapsed
        return _duration(spent / done * (p.total - p.step))

    def stage_finished(self, entry: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.quiet:
            return
        style = STATUS_STYLE.get(entry["status"], "")
        secs = f" in {entry['seconds']:.1f}s" if entry.get("seconds") is not None else ""
        primary = entry.get("figures", {}).get("primary_metric")
        metric = f" · val {primary['name']} {primary['value']:.4g}" if primary else ""
        self.console.print(f"  [{style}]{entry['status']}[/{style}]{secs}{metric}")
        for d in entry.get("diagnoses", []):
            colour = "red" if d["severity"] == "fail" else "yellow"
            step = f" (step {d['step']})" if d.get("step") is not None else ""
            self.console.print(f"  [{colour}]{d['code']}[/{colour}]{step}: {d['message']}")
        for line in format_speed(entry.get("figures", {})):
            self.console.print(f"  {line}", style="dim", markup=False, highlight=False)

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def table(self, summary: dict[str, Any]) -> None:
        if self.quiet:
            return
        self.console.print(verdict_table(summary))


def verdict_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"dlsteps · {summary.get('run_dir', '')}", show_lines=False)
    table.add_column("stage")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    table.add_column("key figures")
    table.add_column("diagnoses")
    for st in summary["stages"]:
        style = STATUS_STYLE.get(st["status"], "")
        figures = st.get("figures", {})
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items() if k in KEY_FIGURES)
        if isinstance(primary := figures.get("primary_metric"), dict):
            shown += f", val {primary['name']}={_fmt(primary['value'])}"
        codes = ", ".join(
            d["code"] + ("" if d["severity"] == "fail" else " (warn)")
            for d in st.get("diagnoses", [])
        )
        secs = f"{st['seconds']:.1f}" if st.get("seconds") is not None else ""
        table.add_row(st["name"], f"[{style}]{st['status']}[/{style}]", secs, shown, codes)
    return table


KEY_FIGURES = (
    "parameters",
    "init_loss",
    "final_train_loss",
    "reached_at_step",
    "best_val_loss",
    "baseline_val_loss",
    "median_batch_seconds",
    "steps",
)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:,}"
    return str(value)
