"""What an ablation shows: the leaderboard (terminal, ``leaderboard.csv``, ``ablate.html``)
and a TensorBoard HParams session per trial.

Everything is read back from the study, so any worker can rewrite the files at any time
(atomically) and an interrupted study still has an up-to-date leaderboard.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from dlsteps.ablate.study import StudySpec
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
    t = Table(title=title)
    for name, justify in (("#", "right"), ("trial", "right"), ("state", "left")):
        t.add_column(name, justify=justify)
    t.add_column(f"{spec.metric} (smoothed)", justify="right")
    t.add_column("steps", justify="right")
    keys = param_keys(board)
    for key in keys:
        t.add_column(key, justify="right")
    t.add_column("gate")
    style = {"complete": "green", "pruned": "yellow", "failed": "red", "interrupted": "red"}
    for r in board:
        state = r.state + (f" @{r.pruned_at}" if r.pruned_at is not None else "")
        colour = style.get(r.state, "dim")
        t.add_row(
            str(r.rank or ""),
            str(r.trial),
            f"[{colour}]{state}[/{colour}]",
            _fmt(r.value),
            str(r.steps if r.steps is not None else ""),
            *(_fmt(r.params.get(k)) for k in keys),
            r.gate or "",
        )
    return t


def write_files(directory: Path, board: Sequence[Row], spec: StudySpec, name: str) -> None:
    write_text(directory / LEADERBOARD, _csv(board))
    write_text(directory / HTML, _html(board, spec, name))


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


def _html(board: Sequence[Row], spec: StudySpec, name: str) -> str:
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
            html.escape(r.run_dir or ""),
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
{_svg(board)}
<h2>leaderboard</h2>
<table><tr>{head}</tr>
{chr(10).join(body)}
</table></body></html>
"""


def _svg(board: Sequence[Row], width: int = 640, height: int = 320) -> str:
    curves = [(r, sorted(r.curve.items())) for r in board if r.curve]
    if not curves:
        return "<p>(no values reported yet)</p>"
    steps = [s for _, c in curves for s, _ in c]
    values = [v for _, c in curves for _, v in c]
    x0, x1 = 0, max(steps) or 1
    y0, y1 = min(values), max(values)
    span = (y1 - y0) or 1.0

    def point(s: int, v: float) -> str:
        x = 40 + (width - 50) * (s - x0) / (x1 - x0)
        y = 10 + (height - 40) * (1 - (v - y0) / span)
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
    axes = (
        f'<text x="40" y="{height - 5}">step 0</text>'
        f'<text x="{width - 90}" y="{height - 5}">step {x1}</text>'
        f'<text x="0" y="15">{_fmt(y1)}</text><text x="0" y="{height - 30}">{_fmt(y0)}</text>'
    )
    return f'<svg width="{width}" height="{height}" font-size="11">{axes}{"".join(lines)}</svg>'


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
