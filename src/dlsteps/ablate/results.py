"""What an ablation shows: the leaderboard (terminal, ``leaderboard.csv``, ``ablate.html``)
and a TensorBoard HParams session per trial.

Everything is read back from the study, so any worker can rewrite the files at any time
(atomically) and an interrupted study still has an up-to-date leaderboard.
"""

from __future__ import annotations

import csv
import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from dlsteps.ablate.study import StudySpec
from dlsteps.report.svgplot import nice_ticks, tick_labels
from dlsteps.rundir.atomic import write_text

LEADERBOARD = "leaderboard.csv"
HTML = "ablate.html"
_ORDER = {"complete": 0, "pruned": 1, "running": 2, "waiting": 3, "failed": 4, "interrupted": 5}


@dataclass(frozen=True)
class Row:
    rank: int | None  # among complete trials, best first
    trial: int
    state: str  # complete | pruned | running | waiting | failed | interrupted
    value: float | None  # best smoothed metric (pruned: at the step it was stopped)
    steps: int | None  # optimizer steps the trial took
    pruned_at: int | None
    gate: str | None  # the stage's own verdict: passed | failed | pruned
    params: dict[str, Any]
    run_dir: str | None
    note: str
    curve: dict[int, float]  # step -> value reported to the pruner


def rows(study: optuna.Study, spec: StudySpec) -> list[Row]:
    """Trials ranked: complete ones by value, then pruned (by value), then the rest."""
    out = [_row(t) for t in study.get_trials(deepcopy=False)]
    sign = -1.0 if spec.maximize else 1.0

    def key(r: Row) -> tuple[int, float, int]:
        value = sign * r.value if r.value is not None else float("inf")
        return (_ORDER[r.state], value, r.trial)

    out.sort(key=key)
    complete = [r for r in out if r.state == "complete"]
    ranks = {r.trial: i for i, r in enumerate(complete, start=1)}
    return [replace(r, rank=ranks.get(r.trial)) for r in out]


def _row(t: FrozenTrial) -> Row:
    attrs = t.user_attrs
    state = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }.get(t.state, "interrupted" if "interrupted" in attrs else "failed")
    value = t.value if t.state == TrialState.COMPLETE else attrs.get("best")
    return Row(
        rank=None,
        trial=t.number,
        state=state,
        value=value,
        steps=attrs.get("steps"),
        pruned_at=attrs.get("pruned_at_step"),
        gate=attrs.get("gate"),
        params=dict(t.params),
        run_dir=attrs.get("run_dir"),
        note=str(attrs.get("interrupted") or attrs.get("note") or ""),
        curve={int(k): float(v) for k, v in t.intermediate_values.items()},
    )


def compute(board: Sequence[Row]) -> int:
    """Summed optimizer steps of every trial: the ablation's cost."""
    return sum(r.steps or 0 for r in board)


def best(board: Sequence[Row]) -> Row | None:
    return next((r for r in board if r.state == "complete"), None)


def param_keys(board: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(k for r in board for k in r.params))


def table(board: Sequence[Row], spec: StudySpec, title: str) -> Table:
    """The leaderboard for a terminal. Every column is at least as wide as its widest
    value, so at 80 columns a figure is never cut; a long header (``model.args.width``)
    folds onto a second line instead."""
    keys = param_keys(board)
    style = {"complete": "green", "pruned": "yellow", "failed": "red", "interrupted": "red"}
    rows = []
    for r in board:
        state = r.state + (f" @{r.pruned_at}" if r.pruned_at is not None else "")
        rows.append(
            [
                str(r.rank or ""),
                str(r.trial),
                (state, style.get(r.state, "dim")),
                _fmt(r.value),
                str(r.steps if r.steps is not None else ""),
                *(_fmt(r.params.get(k)) for k in keys),
                r.gate or "",
            ]
        )
    heads = ["#", "trial", "state", f"{spec.metric} (smoothed)", "steps", *keys, "gate"]
    t = Table(title=title)
    for i, head in enumerate(heads):
        cells = [row[i][0] if isinstance(row[i], tuple) else row[i] for row in rows]
        t.add_column(
            head,
            justify="left" if head in ("state", "gate") else "right",
            min_width=max((len(c) for c in cells), default=1),
            overflow="fold",
        )
    for row in rows:
        t.add_row(*(f"[{c[1]}]{c[0]}[/{c[1]}]" if isinstance(c, tuple) else c for c in row))
    return t


def write_files(directory: Path, board: Sequence[Row], spec: StudySpec, name: str) -> None:
    write_text(directory / LEADERBOARD, _csv(board))
    write_text(directory / HTML, _html(board, spec, name, directory))


def _csv(board: Sequence[Row]) -> str:
    keys = param_keys(board)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    head = ("rank", "trial", "state", "value", "steps", "pruned_at_step", "gate")
    writer.writerow([*head, *keys, "run_dir", "note"])
    for r in board:
        writer.writerow(
            [r.rank or "", r.trial, r.state, "" if r.value is None else r.value, r.steps or 0]
            + [r.pruned_at if r.pruned_at is not None else "", r.gate or ""]
            + [r.params.get(k, "") for k in keys]
            + [r.run_dir or "", r.note]
        )
    return buf.getvalue()


def _html(board: Sequence[Row], spec: StudySpec, name: str, directory: Path) -> str:
    keys = param_keys(board)
    names = ("#", "trial", "state", f"{spec.metric} (smoothed)", "steps", *keys, "gate")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (*names, "run directory", "note"))
    body = []
    for r in board:
        state = r.state + (f" at step {r.pruned_at}" if r.pruned_at is not None else "")
        cells = [
            str(r.rank or ""),
            f'<span style="color:{_colour(r.trial)}">■</span> {r.trial}',
            html.escape(state),
            _fmt(r.value),
            str(r.steps or 0),
            *(html.escape(_fmt(r.params.get(k))) for k in keys),
            html.escape(r.gate or ""),
            _link(r.run_dir, directory),
            html.escape(r.note),
        ]
        body.append(f'<tr class="{r.state}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    top = best(board)
    verdict = (
        f"best: trial {top.trial} ({_params(top.params)}), {spec.metric} {_fmt(top.value)}"
        if top
        else "no trial has finished yet"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ablation {html.escape(name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; text-align: right; }}
tr.pruned {{ color: #a60; }} tr.failed, tr.interrupted {{ color: #b00; }}
th {{ border-bottom: 1px solid #888; }}
</style></head><body>
<h1>ablation {html.escape(name)}</h1>
<p>stage <b>{html.escape(spec.stage)}</b>, {len(board)} trials, pruner
<b>{html.escape(spec.pruner["name"])}</b>, compute {compute(board):,} optimizer steps.
{html.escape(verdict)}</p>
<h2>what the pruner saw</h2>
<p>best smoothed {html.escape(spec.metric)} so far, at every rung check; a curve that
stops early is a pruned trial.</p>
{_svg(board, spec.metric)}
<h2>leaderboard</h2>
<table><tr>{head}</tr>
{chr(10).join(body)}
</table></body></html>
"""


def _link(run_dir: str | None, directory: Path) -> str:
    """The trial's run directory as a link to its report (relative to ``ablate.html``, so
    the ablation directory can be moved or copied whole)."""
    if not run_dir:
        return ""
    target = Path(run_dir)
    page = target / "report.html"
    try:
        href = os.path.relpath(page if page.exists() else target, directory)
    except ValueError:  # another drive (Windows): an absolute link
        href = (page if page.exists() else target).resolve().as_uri()
    return f'<a href="{html.escape(Path(href).as_posix())}">{html.escape(run_dir)}</a>'


# margins of the pruner's chart: room for the y tick labels and both axis titles
LEFT, RIGHT, TOP, BOTTOM = 74, 12, 12, 44


def _svg(board: Sequence[Row], metric: str, width: int = 640, height: int = 320) -> str:
    curves = [(r, sorted(r.curve.items())) for r in board if r.curve]
    if not curves:
        return "<p>(no values reported yet)</p>"
    steps = [s for _, c in curves for s, _ in c]
    values = [v for _, c in curves for _, v in c]
    x0, x1 = 0, max(steps) or 1
    y0, y1 = min(values), max(values)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - (abs(y0) * 0.1 or 1.0), y1 + (abs(y1) * 0.1 or 1.0)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def xy(s: float, v: float) -> tuple[float, float]:
        return LEFT + plot_w * (s - x0) / (x1 - x0), TOP + plot_h * (1 - (v - y0) / (y1 - y0))

    def point(s: int, v: float) -> str:
        x, y = xy(s, v)
        return f"{x:.1f},{y:.1f}"

    lines = []
    for r, c in curves:
        dash = ' stroke-dasharray="4 3"' if r.state == "pruned" else ""
        pts = " ".join(point(s, v) for s, v in c)
        end_x, end_y = point(*c[-1]).split(",")  # marks where a (pruned) curve stops
        lines.append(
            f'<polyline fill="none" stroke="{_colour(r.trial)}" stroke-width="1.5"{dash} '
            f'points="{pts}"><title>trial {r.trial}</title></polyline>'
            f'<circle cx="{end_x}" cy="{end_y}" r="3" fill="{_colour(r.trial)}">'
            f"<title>trial {r.trial}: {r.state}</title></circle>"
        )
    body = "".join(lines)
    return (
        f'<svg class="pruner" width="{width}" height="{height}" font-size="11" '
        f'role="img"><title>what the pruner saw</title>'
        f"{_axes(metric, (x0, x1), (y0, y1), xy, width, height)}{body}</svg>"
    )


def _axes(
    metric: str,
    xs: tuple[float, float],
    ys: tuple[float, float],
    xy: Any,
    width: int,
    height: int,
) -> str:
    """The frame, tick labels on both axes, and what each axis measures."""
    parts = [
        f'<rect x="{LEFT}" y="{TOP}" width="{width - LEFT - RIGHT}" '
        f'height="{height - TOP - BOTTOM}" fill="none" stroke="#bbb"/>'
    ]
    x_ticks = nice_ticks(*xs)
    for t, label in zip(x_ticks, tick_labels(x_ticks), strict=True):
        x, _ = xy(t, ys[0])
        parts.append(
            f'<text class="xtick" x="{x:.1f}" y="{height - BOTTOM + 15}" '
            f'text-anchor="middle">{label}</text>'
        )
    y_ticks = nice_ticks(*ys)
    for t, label in zip(y_ticks, tick_labels(y_ticks), strict=True):
        _, y = xy(xs[0], t)
        parts.append(
            f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text class="ytick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
        )
    mid_x, mid_y = LEFT + (width - LEFT - RIGHT) / 2, TOP + (height - TOP - BOTTOM) / 2
    parts.append(
        f'<text class="xlabel" x="{mid_x:.1f}" y="{height - 6}" text-anchor="middle">'
        "optimizer step</text>"
        f'<text class="ylabel" x="14" y="{mid_y:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {mid_y:.1f})">best smoothed {html.escape(metric)}</text>'
    )
    return "".join(parts)


def _colour(n: int) -> str:
    return f"hsl({(n * 137) % 360}, 65%, 42%)"


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_hparams(run_dir: Path, params: Mapping[str, Any], state: str, metrics: dict) -> None:
    """A TensorBoard HParams session in the trial's run directory: the trial's params and
    state, with ``metrics`` as scalars. ``tensorboard --logdir ABLATION_DIR`` lists every
    trial in the HParams tab (sessions from all trials; their stage curves sit below)."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    hp = {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool))}
    hp["state"] = state
    _, start, end = hparams(hp, metrics)
    with SummaryWriter(str(run_dir)) as writer:
        writer.file_writer.add_summary(start)
        writer.file_writer.add_summary(end)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, 0)
