"""``report.html``: one self-contained file for a run (inline SVG plots, pictures as data
URIs, a Content-Security-Policy that forbids any network request). At the top, the run's
conclusion (the failed stage with its advice, or "every stage passed" and what next);
then per stage: loss curves with the levels its gate applied, metric curves (a metric
measured once is a figure, not a chart with one dot), speed figures, the diagnoses with
advice, the confusion matrix and the sample predictions. The verdicts shown are the ones
``report.views`` re-judged from the logbook.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dlsteps.judge.diagnoses import CATALOG
from dlsteps.judge.rules import rolling_mean
from dlsteps.judge.speed import format_speed
from dlsteps.ladder.stages import STAGES
from dlsteps.logbook.curves import Curves
from dlsteps.report.closing import closing
from dlsteps.report.svgplot import HLine, Note, Series, line_chart
from dlsteps.report.views import StageView, rejudge
from dlsteps.rundir.layout import BATCH_PNG, LR_SWEEP_JSON, SAMPLES_TXT, WORST_PNG
from dlsteps.rundir.run import RunDir, StageDir

SAMPLES_MIN_WIDTH = 360  # pixels; small sample pictures are shown zoomed
CONFUSED_PAIRS = 5
TRAIN, VAL, GATE, BASELINE = "#1f77b4", "#ff7f0e", "#d62728", "#7f7f7f"
COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#1f77b4")
SHOWN_ELSEWHERE = ("train/loss", "val/loss", "baseline/", "time/", "metrics/", "grad/", "optim/")


# --- HTML --------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;
 max-width:1180px;color:#1d1d1f;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0}h3{font-size:14px;margin:14px 0 6px}
.meta{color:#666;margin:2px 0 10px}
section{border:1px solid #ddd;border-radius:8px;padding:14px 18px;margin:18px 0}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;color:#fff;
 vertical-align:middle}
.passed{background:#2e7d32}.failed,.error{background:#c62828}.skipped{background:#9e9e9e}
.interrupted,.pruned,.running{background:#ef8f00}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 8px;
 text-align:left;font-variant-numeric:tabular-nums}th{background:#f5f5f7}
.plots,.tables{display:flex;flex-wrap:wrap;gap:10px 28px}
svg.plot{border:1px solid #eee;border-radius:6px;background:#fff}
svg .frame{fill:none;stroke:#bbb}svg .grid{stroke:#eee}
svg .ytick{font-size:10px;text-anchor:end;fill:#555}
svg .xtick{font-size:10px;text-anchor:middle;fill:#555}
svg .ptitle{font-size:12px;font-weight:600;fill:#222}svg .legend{font-size:11px;fill:#333}
.diag{border-left:4px solid #c62828;padding:4px 10px;margin:6px 0;background:#fdf3f3}
.diag.warn{border-color:#ef8f00;background:#fff8ec}
details{margin-top:4px;color:#444}code{background:#f2f2f4;padding:0 3px;border-radius:3px}
img.samples{image-rendering:pixelated;max-width:100%;border:1px solid #eee}
.cm td{text-align:right;min-width:34px}.note{color:#8a5a00}.tables td{max-width:480px}
svg .pnote{font-size:11px}
.verdict{border-radius:8px;padding:10px 16px;margin:14px 0;font-size:15px}
.verdict.failed{background:#fdf3f3;border:2px solid #c62828}
.verdict.passed{background:#f1f8f1;border:2px solid #2e7d32}.verdict p{margin:4px 0}
.figure{border:1px solid #eee;border-radius:6px;padding:8px 14px;min-width:200px}
.figure .value{font-size:22px;font-weight:600}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def write_report(run: RunDir) -> tuple[dict[str, Any], Path, list[str]]:
    """Re-judge and write ``RUN_DIR/report.html``; returns the summary, path and notes."""
    summary, views, notes = rejudge(run)
    return summary, run.write_report(render(summary, views, notes, run)), notes


def render(summary: dict[str, Any], views: list[StageView], notes: list[str], run: RunDir) -> str:
    title = f"dlsteps report · {summary.get('name', run.path.name)}"
    head = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
    )
    status = summary.get("status", "?")
    meta = " · ".join(
        escape(str(summary[k])) for k in ("config", "run_dir", "device", "started") if k in summary
    )
    parts = [
        head,
        f"<h1>{escape(title)} {_badge(status)}</h1><p class='meta'>{meta}</p>",
        _verdict(summary),
        *(f"<p class='note'>{escape(n)}</p>" for n in notes),
        _overview(views),
        *(_stage_section(v, run.stage(v.entry["name"])) for v in views),
        "</body></html>",
    ]
    return "\n".join(parts)


def _verdict(summary: dict[str, Any]) -> str:
    """The conclusion first: the failed stage, what was seen and what to try (linked to
    its section), or every stage passed and the next thing to try."""
    end = closing(summary)
    if end is None:
        return ""
    if end.passed:
        after = f"<p>{escape(end.next or '')}</p>"
        if end.command:
            after += f"<p><code>{escape(end.command)}</code></p>"
        return f"<div class='verdict passed'><p><b>✓ {escape(end.headline)}</b></p>{after}</div>"
    info = CATALOG.get(end.code or "")
    advice = (
        f"<p><b>Likely causes:</b> {escape(info.causes)}.</p>"
        f"<p><b>First thing to try:</b> {escape(info.first_try)}.</p>"
        if info
        else ""
    )
    also = "".join(f"<p>{escape(line)}</p>" for line in end.also)
    stage = escape(end.stage or "")
    link = f"<p><a href='#stage-{stage}'>the {stage} stage: curves and figures</a></p>"
    return (
        f"<div class='verdict failed'><p><b>✗ {escape(end.headline)}</b></p>"
        f"{advice}{also}{link}</div>"
    )


def _badge(status: str) -> str:
    return f'<span class="badge {escape(status)}">{escape(status)}</span>'


def _overview(views: list[StageView]) -> str:
    rows = []
    for v in views:
        e = v.entry
        primary = e.get("figures", {}).get("primary_metric")
        metric = f"{primary['name']} {_fmt(primary['value'])}" if primary else ""
        codes = ", ".join(
            d["code"] + ("" if d.get("severity") == "fail" else " (warn)")
            for d in e.get("diagnoses", [])
        )
        secs = _fmt(e["seconds"]) if e.get("seconds") is not None else ""
        rows.append(
            f"<tr><td><a href='#stage-{escape(e['name'])}'>{escape(e['name'])}</a></td>"
            f"<td>{_badge(e['status'])}</td><td>{secs}</td><td>{escape(metric)}</td>"
            f"<td>{escape(codes)}</td></tr>"
        )
    return (
        "<table><tr><th>stage</th><th>status</th><th>seconds</th><th>primary metric</th>"
        f"<th>diagnoses</th></tr>{''.join(rows)}</table>"
    )


def _stage_section(view: StageView, stage_dir: StageDir) -> str:
    e = view.entry
    name = e["name"]
    meta = []
    if e.get("seconds") is not None:
        meta.append(f"{_fmt(e['seconds'])} s")
    if "stopped" in e.get("figures", {}):
        meta.append(f"stopped: {e['figures']['stopped']}")
    if view.recorded_status != e["status"]:
        meta.append(f"recorded as {view.recorded_status}, re-judged from the logbook")
    parts = [
        f"<section id='stage-{escape(name)}'><h2>{escape(name)} {_badge(e['status'])}</h2>",
        f"<p class='meta'>{escape(' · '.join(meta))}</p>",
        _diagnoses(e.get("diagnoses", [])),
    ]
    if e.get("error"):
        parts.append(f"<div class='diag'>{escape(str(e['error']))}</div>")
    if e.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in e["notes"]) + "</ul>")
    plots = _plots(view)
    if sweep := _sweep(stage_dir):
        plots.append(sweep)
    if plots:
        parts.append(f"<div class='plots'>{''.join(plots)}</div>")
    figures = e.get("figures", {})
    metrics = stage_dir.read_metrics()
    tables = [_figures(figures), _speed(figures), _confusion(metrics), _confused_pairs(metrics)]
    parts.append(
        "<div class='tables'>" + "".join(f"<div>{t}</div>" for t in tables if t) + "</div>"
    )
    parts.append(_pictures(stage_dir, metrics))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _diagnoses(diagnoses: list[dict[str, Any]]) -> str:
    out = []
    for d in diagnoses:
        sev = d.get("severity", "fail")
        step = f" at step {d['step']}" if d.get("step") is not None else ""
        info = CATALOG.get(d["code"])
        advice = (
            f"<details><summary>{escape(info.title)}: causes and what to try</summary>"
            f"<p><b>Likely causes:</b> {escape(info.causes)}.</p>"
            f"<p><b>First thing to try:</b> {escape(info.first_try)}.</p>"
            f"<p><code>dlsteps explain {escape(d['code'])}</code></p></details>"
            if info
            else ""
        )
        out.append(
            f"<div class='diag {escape(sev)}'><b><code>{escape(d['code'])}</code></b> "
            f"({escape(sev)}{step}): {escape(d.get('message', ''))}{advice}</div>"
        )
    return "".join(out)


def _plots(view: StageView) -> list[str]:
    c, name = view.curves, view.entry["name"]
    if not c:
        return []
    gate = view.plan.knobs.gate if view.plan else None
    thresholds = view.entry.get("figures", {}).get("thresholds") or []
    plots = [_loss_plot(c, name, gate, thresholds, view.plan)]
    scalars = sorted(t for t in c if t.startswith("metrics/") and t.count("/") == 1)
    if scalars:
        hlines = _levels(thresholds, lambda tag: tag.startswith("metrics/"))
        hlines += [
            HLine(
                f"input-independent {t[len('metrics/') :]}", c[f"baseline/{t[8:]}"].last, BASELINE
            )
            for t in scalars
            if len(c.get_curve(f"baseline/{t[8:]}"))
        ]
        plots.append(_chart(c, scalars, "val metrics (full val set)", hlines=hlines))
    per_class = sorted(t for t in c if t.startswith("metrics/iou/"))
    if per_class:
        plots.append(_chart(c, per_class, "val IoU per class"))
    if len(c.get_curve("time/compute")):
        plots.append(_step_time_plot(c, gate))
    if len(c.get_curve("grad/norm")):
        norms = ["grad/norm", *sorted(t for t in c if t.startswith("grad/norm/"))]
        plots.append(_chart(c, norms, "gradient norm (all, and per layer group)", log_y=True))
    groups: dict[str, list[str]] = {}  # e.g. diag/*, lr, gan/*: one chart per prefix
    for tag in sorted(t for t in c if not t.startswith(SHOWN_ELSEWHERE)):
        groups.setdefault(tag.split("/")[0], []).append(tag)
    plots += [_chart(c, tags, prefix) for prefix, tags in groups.items()]
    return plots


def _levels(thresholds: list[dict[str, Any]], shown: Any) -> list[HLine]:
    """The levels the stage's gate applied (its ``thresholds`` figure) to the curves
    ``shown(tag)`` selects: exactly what was judged, margins included."""
    return [HLine(t["label"], float(t["level"]), GATE) for t in thresholds if shown(t["tag"])]


def _loss_plot(
    c: Curves, stage: str, gate: Any, thresholds: list[dict[str, Any]], plan: Any
) -> str:
    train, val = c.get_curve("train/loss"), c.get_curve("val/loss")
    window = gate.window if gate else 10
    series = [
        Series("train", train.steps, train.values, TRAIN, width=1.0, opacity=0.35),
        Series(f"train (mean of {window})", train.steps, rolling_mean(train.values, window), TRAIN),
        Series("val batch", val.steps, val.values, VAL, width=1.0, opacity=0.6),
    ]
    hlines = _levels(thresholds, lambda tag: tag in ("train/loss", "val/loss"))
    if len(base := c.get_curve("baseline/val_loss")):
        hlines.append(HLine("baseline", float(base.values[0]), BASELINE))
    plain = stage in STAGES and STAGES[stage].plain
    note = None
    if plain and len(val):
        samples = _overfit_samples(plan)
        plural = "s" if samples != 1 else ""
        note = Note(
            f"a rising val loss is expected: {samples} train sample{plural} memorised, "
            "nothing carries over",
            VAL,
        )
    title = "loss (train: every batch, val: one batch)"
    return line_chart(series, hlines, title, log_y=plain, note=note)


def _overfit_samples(plan: Any) -> int:
    """The overfit stage's train samples (its knobs), 1 when the run's config is unreadable."""
    return int(getattr(getattr(plan, "knobs", None), "samples", None) or 1)


def _step_time_plot(c: Curves, gate: Any) -> str:
    data, compute = c.get_curve("time/data"), c.get_curve("time/compute")
    n = min(len(data), len(compute))
    series = [
        Series("data + compute", data.steps[:n], data.values[:n] + compute.values[:n], TRAIN),
        Series("data", data.steps[:n], data.values[:n], VAL, width=1.0),
    ]
    hlines = [HLine("max_batch_seconds", gate.max_batch_seconds, GATE)] if gate else []
    return line_chart(series, hlines, "seconds per batch", log_y=True)


def _chart(
    c: Curves,
    tags: list[str],
    title: str,
    hlines: list[HLine] | None = None,
    log_y: bool = False,
) -> str:
    series = [
        Series(t.removeprefix("metrics/"), c[t].steps, c[t].values, COLOURS[i % len(COLOURS)])
        for i, t in enumerate(tags)
    ]
    if all(np.isfinite(s.y).sum() <= 1 for s in series):  # measured once (or never)
        return _figure_card(series, title)
    return line_chart(series, hlines, title, log_y=log_y)


def _figure_card(series: list[Series], title: str) -> str:
    """Curves with one point each as what they are: values at a step."""
    rows = []
    for s in series:
        keep = np.isfinite(s.y)
        if not keep.any():
            continue
        value, step = float(s.y[keep][0]), int(s.x[keep][0])
        rows.append(
            f"<tr><th>{escape(s.label)}</th><td class='value'>{escape(_fmt(value))}</td>"
            f"<td>at step {step}</td></tr>"
        )
    body = f"<table>{''.join(rows)}</table>" if rows else "<p>nothing logged</p>"
    return f"<div class='figure'><h3>{escape(title)}</h3>{body}</div>"


def _figures(figures: dict[str, Any]) -> str:
    if not figures:
        return ""
    rows = []
    for key, value in figures.items():
        if key == "speed":  # its own section, as the console words it
            continue
        if key == "primary_metric" and isinstance(value, dict):
            better = "higher" if value.get("higher_is_better") else "lower"
            value = f"{value['name']} = {_fmt(value['value'])} ({better} is better)"
        if isinstance(value, dict):  # e.g. speed: {data_ms: {median, p90}, ...}
            rows += [
                f"<tr><th>{escape(key)}.{escape(k)}</th><td>{escape(_fmt(v))}</td></tr>"
                for k, v in value.items()
            ]
            continue
        rows.append(f"<tr><th>{escape(key)}</th><td>{escape(_fmt(value))}</td></tr>")
    return f"<h3>key figures</h3><table>{''.join(rows)}</table>"


def _speed(figures: dict[str, Any]) -> str:
    """The stage's speed report as the console prints it (``speed.format_speed``)."""
    lines = format_speed(figures)
    if not lines:
        return ""
    return "<h3>speed</h3><ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"


def _confusion(data: dict[str, Any] | None) -> str:
    if not data:
        return ""
    cm, names = data.get("confusion"), data.get("class_names") or []
    if not cm:
        return ""
    arr = np.asarray(cm, dtype=np.float64)
    share = arr / np.maximum(arr.sum(axis=1, keepdims=True), 1)
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = []
    for i, row in enumerate(cm):
        cells = "".join(
            f"<td style='background:rgba(31,119,180,{share[i, j]:.2f});"
            f"color:{'#fff' if share[i, j] > 0.55 else '#000'}'>{v}</td>"
            for j, v in enumerate(row)
        )
        rows.append(f"<tr><th>{escape(names[i] if i < len(names) else str(i))}</th>{cells}</tr>")
    return (
        f"<h3>confusion matrix at step {data.get('step')} (rows: target, columns: "
        f"prediction)</h3><table class='cm'><tr><th></th>{head}</tr>{''.join(rows)}</table>"
    )


def _picture(path: Path, title: str, alt: str) -> str:
    """A PNG of the stage directory inline, zoomed by whole pixels (sharp)."""
    if not path.exists():
        return ""
    raw = path.read_bytes()
    width = Image.open(io.BytesIO(raw)).width
    shown = width * max(1, -(-SAMPLES_MIN_WIDTH // width))
    data = base64.b64encode(raw).decode("ascii")
    return (
        f"<div><h3>{escape(title)}</h3><img class='samples' width='{shown}' alt='{escape(alt)}' "
        f"src='data:image/png;base64,{data}'></div>"
    )


def _pictures(stage_dir: StageDir, metrics: dict[str, Any] | None) -> str:
    """What the net saw (its first train batch), what it predicted on fixed val samples,
    and, at the end of full-data, the val samples it got most wrong."""
    worst = (metrics or {}).get("worst") or []
    losses = ", ".join(f"#{w['index']} {_fmt(w['loss'])}" for w in worst)
    parts = [
        _picture(
            stage_dir.path / BATCH_PNG,
            "what the net sees: the first train batch as it enters the model",
            "inputs of the first train batch with their targets",
        ),
        _picture(
            stage_dir.samples_png,
            "sample predictions (fixed val samples, end of stage)",
            "input, target and prediction of fixed val samples",
        ),
        _picture(
            stage_dir.path / WORST_PNG,
            f"highest-loss val samples (val index and loss: {losses})",
            "input, target and prediction of the val samples with the highest loss",
        ),
        _text(
            stage_dir.path / SAMPLES_TXT,
            "sample generations (prompt from a val block, then the model's tokens in ⟦ ⟧)",
        ),
    ]
    shown = "".join(p for p in parts if p)
    return f"<div class='plots'>{shown}</div>" if shown else ""


def _text(path: Path, title: str) -> str:
    """A text file of the stage directory (a language model's generations), as it is."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace")
    return (
        f"<div><h3>{escape(title)}</h3><pre style='white-space:pre-wrap;max-width:60em'>"
        f"{escape(text)}</pre></div>"
    )


def _confused_pairs(data: dict[str, Any] | None) -> str:
    """The off-diagonal cells of the confusion matrix with the most samples."""
    if not data or not data.get("confusion"):
        return ""
    cm = np.asarray(data["confusion"], dtype=np.int64)
    names = data.get("class_names") or [str(i) for i in range(len(cm))]
    off = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j]
    top = [t for t in sorted(off, reverse=True)[:CONFUSED_PAIRS] if t[0] > 0]
    if not top:
        return ""
    rows = "".join(
        f"<tr><td>{escape(names[i])}</td><td>{escape(names[j])}</td><td>{n}</td>"
        f"<td>{n / max(cm[i].sum(), 1):.0%}</td></tr>"
        for n, i, j in top
    )
    return (
        "<h3>most confused class pairs</h3><table><tr><th>target</th><th>predicted as</th>"
        f"<th>count</th><th>share of the target</th></tr>{rows}</table>"
    )


def _sweep(stage_dir: StageDir) -> str:
    """The LR range test of advice that was tried (``lr_sweep.json``)."""
    sweep = stage_dir.read_json(LR_SWEEP_JSON)
    if not sweep:
        return ""
    lrs = np.asarray(sweep["lrs"], dtype=np.float64)
    smoothed = np.asarray([float(v) for v in sweep["smoothed"]], dtype=np.float64)
    keep = np.isfinite(smoothed)
    series = [Series("loss (smoothed)", np.log10(lrs[keep]), smoothed[keep], TRAIN)]
    tried = ", ".join(
        f"{lr:.2g}: {'gate in ' + str(n) + ' steps' if n else 'no'}" for lr, n in sweep["tried"]
    )
    title = f"learning-rate range test; tried {tried}"
    return line_chart(series, [], title, log_y=True, x_label="log10 learning rate")


def _fmt(value: Any, grouped: bool = True) -> str:
    """Figures as people read them: 4 significant digits, nested figures inline. A figure
    alone in its cell gets thousands separators; inside a comma-separated list it has none."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v, grouped=False)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_fmt(v, grouped=False) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000 and grouped:
        return f"{value:,}"
    return str(value)
