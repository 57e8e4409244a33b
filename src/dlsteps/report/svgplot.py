"""Line charts as inline SVG strings: the report's plots, with no JavaScript and no network.

Deliberately small: lines, dots for short series, dashed horizontal reference lines (gate
thresholds, baselines), linear or log y axis, a legend. Long curves are reduced to the
minimum and maximum of each of ``MAX_POINTS // 2`` buckets, so a spike survives while the
page stays small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np

MAX_POINTS = 1200
DOTS_BELOW = 40  # series this short are drawn with a dot per point
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 58, 16, 42, 34


@dataclass(frozen=True)
class Series:
    label: str
    x: np.ndarray  # (N,) steps
    y: np.ndarray  # (N,) values; non-finite points are left out
    colour: str
    width: float = 1.6
    opacity: float = 1.0


@dataclass(frozen=True)
class HLine:
    label: str
    y: float
    colour: str


@dataclass(frozen=True)
class Note:
    text: str
    colour: str


NOTE_HEIGHT = 18  # pixels added under the plot for a note


def line_chart(
    series: list[Series],
    hlines: list[HLine] | None = None,
    title: str = "",
    log_y: bool = False,
    width: int = 540,
    height: int = 260,
    x_label: str = "step",
    note: Note | None = None,
) -> str:
    """An ``<svg class="plot">`` element; ``log_y`` falls back to linear when a value ≤ 0.
    A ``note`` is a line of text under the plot, in the colour of the curve it explains."""
    hlines = [h for h in (hlines or []) if math.isfinite(h.y)]
    clean = [_finite(s) for s in series]
    clean = [s for s in clean if len(s.x)]
    values = [v for s in clean for v in (s.y.min(), s.y.max())] + [h.y for h in hlines]
    steps = [v for s in clean for v in (s.x.min(), s.x.max())]
    if not values or not steps:
        return _empty(title, width, height)
    log_y = log_y and min(values) > 0
    ymap = np.log10 if log_y else (lambda v: np.asarray(v, dtype=np.float64))
    y_lo, y_hi = _span(float(ymap(min(values))), float(ymap(max(values))))
    x_lo, x_hi = _span(float(min(steps)), float(max(steps)))
    plot_w, plot_h = width - PAD_LEFT - PAD_RIGHT, height - PAD_TOP - PAD_BOTTOM

    def px(x: np.ndarray) -> np.ndarray:
        return PAD_LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: np.ndarray) -> np.ndarray:
        return PAD_TOP + (1 - (ymap(y) - y_lo) / (y_hi - y_lo)) * plot_h

    total = height + (NOTE_HEIGHT if note else 0)
    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{total}" viewBox="0 0 {width} {total}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{PAD_LEFT}" y="16" class="ptitle">{escape(title)}</text>',
        f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>',
    ]
    parts += _y_ticks(y_lo, y_hi, log_y, py, width)
    parts += _x_ticks(x_lo, x_hi, px, height, x_label)
    for s in clean:
        xs, ys = _reduce(s.x, s.y)
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(xs), py(ys), strict=True))
        parts.append(
            f'<polyline class="series" points="{points}" fill="none" stroke="{s.colour}" '
            f'stroke-width="{s.width}" stroke-opacity="{s.opacity}"/>'
        )
        if len(s.x) < DOTS_BELOW:
            parts += [
                f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.8" fill="{s.colour}"/>'
                for a, b in zip(px(s.x), py(s.y), strict=True)
            ]
    for h in hlines:
        y = float(py(np.asarray(h.y)))
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{h.colour}" stroke-width="1.4" stroke-dasharray="6 4"/>'
        )
    parts.append(_legend(clean, hlines, width))
    if note:
        parts.append(
            f'<text x="{PAD_LEFT}" y="{total - 5}" class="pnote" fill="{note.colour}">'
            f"{escape(note.text)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _finite(s: Series) -> Series:
    keep = np.isfinite(s.y)
    return Series(s.label, s.x[keep], s.y[keep], s.colour, s.width, s.opacity)


def _span(lo: float, hi: float) -> tuple[float, float]:
    """A non-empty range with a little air above and below."""
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _reduce(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most ``MAX_POINTS`` points: each bucket's minimum and maximum, in step order."""
    if len(x) <= MAX_POINTS:
        return x, y
    buckets = np.array_split(np.arange(len(x)), MAX_POINTS // 2)
    keep = []
    for b in buckets:
        lo, hi = b[np.argmin(y[b])], b[np.argmax(y[b])]
        keep += sorted({int(lo), int(hi)})
    idx = np.asarray(keep)
    return x[idx], y[idx]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k steps) inside [lo, hi]."""
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = [first + i * step for i in range(int((hi - first) / step) + 1)]
    return [0.0 if abs(t) < step * 1e-9 else t for t in ticks]  # no 1e-17 for zero


def tick_labels(ticks: list[float]) -> list[str]:
    """Labels with as many digits as it takes to tell neighbouring ticks apart (a memory
    curve between 839.05 and 839.2 MB needs five, not four)."""
    labels = [_fmt(t) for t in ticks]
    for digits in range(5, 12):
        if len(set(labels)) == len(labels):
            break
        labels = [_fmt(t, digits) for t in ticks]
    return labels


def _y_ticks(lo: float, hi: float, log_y: bool, py, width: int) -> list[str]:
    if log_y:
        ticks = [10.0**k for k in range(math.ceil(lo), math.floor(hi) + 1)]
        if len(ticks) < 2:  # less than a decade: plain ticks on the value scale
            ticks = [t for t in nice_ticks(10**lo, 10**hi) if t > 0]
    else:
        ticks = nice_ticks(lo, hi)
    out = []
    for t, label in zip(ticks, tick_labels(ticks), strict=True):
        y = float(py(np.asarray(t)))
        out.append(
            f'<line x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'class="grid"/><text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" class="ytick">'
            f"{label}</text>"
        )
    return out


def _x_ticks(lo: float, hi: float, px, height: int, label: str) -> list[str]:
    out = []
    ticks = nice_ticks(lo if lo < 0 else max(lo, 0.0), hi)
    for t, tick in zip(ticks, tick_labels(ticks), strict=True):
        x = float(px(np.asarray(t)))
        out.append(f'<text x="{x:.1f}" y="{height - PAD_BOTTOM + 16}" class="xtick">{tick}</text>')
    out.append(
        f'<text x="{PAD_LEFT + (px(np.asarray(hi)) - PAD_LEFT) / 2:.1f}" y="{height - 4}" '
        f'class="xtick">{escape(label)}</text>'
    )
    return out


def _legend(series: list[Series], hlines: list[HLine], width: int) -> str:
    items = [(s.label, s.colour, False) for s in series if s.label]
    items += [(h.label, h.colour, True) for h in hlines]
    x, parts = width - PAD_RIGHT, []
    for label, colour, dashed in reversed(items):
        text_w = 6.2 * len(label)
        x -= text_w + 26
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        parts.append(
            f'<line x1="{x:.0f}" x2="{x + 16:.0f}" y1="30" y2="30" stroke="{colour}" '
            f'stroke-width="2"{dash}/><text x="{x + 20:.0f}" y="34" class="legend">'
            f"{escape(label)}</text>"
        )
    return "\n".join(parts)


def _empty(title: str, width: int, height: int) -> str:
    return (
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img"><title>{escape(title)}'
        f'</title><text x="{PAD_LEFT}" y="16" class="ptitle">{escape(title)}</text>'
        f'<text x="{width / 2}" y="{height / 2}" class="xtick">nothing logged</text></svg>'
    )


def _fmt(v: float, digits: int = 4) -> str:
    """Four significant digits with a short exponent for very large or small values
    (``1e+04``); more ``digits`` where the ticks need them."""
    if v == 0:
        return "0"
    if digits == 4 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        return f"{v:.0e}"
    return f"{v:.{digits}g}"
