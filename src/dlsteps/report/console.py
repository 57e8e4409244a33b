"""What the user sees while a run climbs: a live rich display on a terminal, plain
lines in a log file or CI, nothing under ``--json``/``--quiet``.

Each thing is said once: advice a stage repeats from an earlier one (the speed report's
"what to try") is not printed again. The run ends with its verdict: a failure and what
to try above the verdict table, or "every stage passed" and the next thing to try below.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from dlsteps.judge.speed import format_speed
from dlsteps.report.closing import closing

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
        self._said: set[str] = set()  # advice lines printed so far in this run
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
            if line.startswith("→"):  # advice, in prose: once per run
                if line not in self._said:
                    self._said.add(line)
                    self.console.print(f"  {line}", style="dim", markup=False, highlight=False)
                continue
            for packed in _packed(line.split(" · "), self.console.width - 2):
                self.console.print(
                    f"  {packed}", style="dim", markup=False, highlight=False, soft_wrap=True
                )

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def table(self, summary: dict[str, Any]) -> None:
        if not self.quiet:
            print_verdict(self.console, summary)


def print_verdict(console: Console, summary: dict[str, Any]) -> None:
    """The verdict table with the run's conclusion: a failure first, a pass after. Prose
    wraps between words; a command stays on one line, to be copied whole."""
    end = closing(summary)
    if end is not None and not end.passed:
        console.print(f"[bold red]✗ {escape(end.headline)}[/bold red]")
        if end.first_try:
            console.print(f"  try: {escape(end.first_try)}", highlight=False)
        if end.code:
            console.print(f"  more: dlsteps explain {end.code}", highlight=False)
        for line in end.also:
            console.print(f"  {escape(line)}", highlight=False)
    console.print(verdict_table(summary))
    if end is not None and end.passed:
        console.print(f"[bold green]✓ {escape(end.headline)}[/bold green]")
        if end.next:
            console.print(f"  {escape(end.next)}", highlight=False)
        if end.command:
            console.print(f"    {escape(end.command)}", soft_wrap=True, highlight=False)


def verdict_table(summary: dict[str, Any]) -> Table:
    """One row per stage: its diagnoses (first, coloured by severity) and key figures in one
    column, which wraps between items and never inside one (it is at least as wide as its
    longest item); the table fits 80 columns."""
    rows = []
    for st in summary["stages"]:
        figures = st.get("figures", {})
        shown = [f"{k}={_fmt(v)}" for k, v in figures.items() if k in KEY_FIGURES]
        if isinstance(primary := figures.get("primary_metric"), dict):
            shown.append(f"val_{primary['name']}={_fmt(primary['value'])}")
        codes = [
            (d["code"] + ("" if d["severity"] == "fail" else " (warn)"), d["severity"])
            for d in st.get("diagnoses", [])
        ]
        rows.append((st, shown, codes))
    widest = _longest([*shown, *(code for code, _ in codes)] for _, shown, codes in rows)
    table = Table(title=f"dlsteps · {summary.get('run_dir', '')}", show_lines=False)
    table.add_column("stage", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    table.add_column("diagnoses · key figures", min_width=widest)
    for st, shown, codes in rows:
        style = STATUS_STYLE.get(st["status"], "")
        secs = f"{st['seconds']:.1f}" if st.get("seconds") is not None else ""
        cell = Text()
        for i, (code, severity) in enumerate(codes):
            cell.append(", " if i else "")
            cell.append(code, style="red" if severity == "fail" else "yellow")
        if codes and shown:
            cell.append("\n")
        cell.append(", ".join(shown))
        table.add_row(st["name"], f"[{style}]{st['status']}[/{style}]", secs, cell)
    return table


def _longest(groups: Any) -> int:
    """The width of the longest item (with its separator) of any row."""
    return max((len(item) + 1 for items in groups for item in items), default=0)


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


def _packed(parts: list[str], width: int) -> list[str]:
    """Figures joined by `` · `` into lines of at most ``width``, broken only between two
    figures (``step 31.1 / 55.4 ms`` is never split)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += f" · {part}"
        else:
            lines.append(part)
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _fmt(value: Any) -> str:
    """A figure in a comma-separated list: 4 significant digits, integers without a
    thousands separator (``parameters=117092``, not ``117,092,``)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
