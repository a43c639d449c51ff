"""Bar charts and heat maps written as SVG text: report.html's charts without matplotlib.

A run's page has up to a dozen bar charts; matplotlib drew them in 0.4 s a page (most of a
warm rerun, and a minute of CPU over the test suite), these take milliseconds. Labels are
given room by an estimate of their width (`text_width`), at least what a browser draws them in
(a test measures that in Chromium), so nothing is clipped. Scatter plots with log scales (a
language model's perplexity chart, tune's Pareto fronts) stay matplotlib (markup.svg).
Everything is escaped: a layer named `<script>` is text here too."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from compress.report.markup import esc

FONT = 11  # px; labels, ticks
ROW = 18  # px per category (bars of one category share it)
PAD = 8
# Glyph widths in em, at or above DejaVu Sans's (the widest common sans-serif; what system-ui
# falls back to on Linux): a label is given at least the room a browser draws it in.
_WIDE, _NARROW = set("mwMW@%"), set("ijlftrI.,:;'|!()[]/ ")


def text_width(text: str, size: float = FONT, bold: bool = False) -> float:
    em = (1.12 if bold else 1.0) * sum(
        1.0 if c in _WIDE else 0.4 if c in _NARROW else 0.8 if c.isupper() else 0.64 for c in text
    )
    return em * size


@dataclass(frozen=True)
class Bars:
    """One series: a value per category, its colour (one, or one per value), a legend entry
    (None: not in the legend), and optional whisker ends (e.g. p90 beside a p50 bar)."""

    values: Sequence[float]
    color: str | Sequence[str]
    label: str | None = None
    upper: Sequence[float] | None = None


@dataclass(frozen=True)
class Line:
    """A vertical line at `x` (a gate, zero), dashed or solid, named in the legend if labelled."""

    x: float
    color: str
    dashed: bool = False
    label: str | None = None


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def plain(x: float) -> str:
    return f"{x:g}"


def bar_chart(
    labels: Sequence[str],
    series: Sequence[Bars],
    *,
    title: str,
    xlabel: str,
    lines: Sequence[Line] = (),
    tick_format: Callable[[float], str] = plain,
    width: int = 620,
) -> str:
    """Horizontal bars, one row per label (top to bottom in the order given), the series of a
    row side by side within it; a linear x axis from zero (or below, for negative values)."""
    n, k = len(labels), max(len(series), 1)
    series = [_finite(s) for s in series]
    values = [v for s in series for v in (*s.values, *(s.upper or ()))]
    values += [ln.x for ln in lines] + [0.0]
    ticks = nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    left = PAD + max((text_width(t) for t in labels), default=0) + 6
    legend = [(s.label, s.color) for s in series if s.label] + [
        (ln.label, ln.color) for ln in lines if ln.label
    ]
    top = 26 + (16 if legend else 0)
    key = sum(14 + text_width(name) + 12 for name, _ in legend)
    width = int(max(width, text_width(title, bold=True) + 2 * PAD, left + key + PAD,
                    left + text_width(xlabel) + 2 * PAD))  # fmt: skip
    plot_w = width - left - PAD - text_width(tick_format(hi)) / 2
    plot_h = n * ROW
    height = top + plot_h + 40

    def sx(x: float) -> float:
        return left + (x - lo) / (hi - lo) * plot_w

    out = [_open(width, height), _text(width / 2, 16, title, anchor="middle", weight="600")]
    x = left
    for name, color in legend:  # the legend: a swatch and its name per entry, on one line
        out.append(f'<rect x="{x:.1f}" y="{top - 22}" width="10" height="10" fill="{esc(color)}"/>')
        out.append(_text(x + 14, top - 13, name))
        x += 14 + text_width(name) + 12
    for t in ticks:  # grid and tick labels
        out.append(_vline(sx(t), top, top + plot_h, "#e3e6eb"))
        out.append(_text(sx(t), top + plot_h + 14, tick_format(t), anchor="middle"))
    bar_h = (ROW - 6) / k
    for row, label in enumerate(labels):
        y0 = top + row * ROW + 3
        out.append(_text(left - 6, y0 + (ROW - 6) / 2 + 4, label, anchor="end"))
        for j, s in enumerate(series):
            v = s.values[row]
            color = s.color if isinstance(s.color, str) else s.color[row]
            x0, x1 = sorted((sx(0.0), sx(v)))
            y = y0 + j * bar_h
            out.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.5):.1f}" '
                f'height="{bar_h:.1f}" fill="{esc(color)}"><title>{esc(label)}: '
                f"{esc(tick_format(v))}</title></rect>"
            )
            if s.upper is not None and s.upper[row] > v:  # a whisker from the bar's end
                ym = y + bar_h / 2
                out.append(
                    f'<path d="M{sx(v):.1f} {ym:.1f}H{sx(s.upper[row]):.1f}'
                    f'M{sx(s.upper[row]):.1f} {ym - 3:.1f}V{ym + 3:.1f}" stroke="#333" '
                    'stroke-width="1" fill="none"/>'
                )
    for ln in lines:
        out.append(_vline(sx(ln.x), top, top + plot_h, ln.color, ln.dashed, 1.2))
    out.append(
        f'<rect x="{left:.1f}" y="{top}" width="{plot_w:.1f}" height="{plot_h}" fill="none" '
        'stroke="#9aa3af" stroke-width="0.8"/>'
    )
    # the axis label centred under the plot, moved left as far as it must to fit
    centre = min(left + plot_w / 2, width - PAD - text_width(xlabel) / 2)
    out.append(_text(centre, height - 8, xlabel, anchor="middle"))
    out.append("</svg>")
    return "".join(out)


def _finite(s: Bars) -> Bars:
    """A series with NaN or infinite values drawn as 0 (a chart never breaks on one value)."""

    def clean(values: Sequence[float]) -> list[float]:
        return [float(v) if v is not None and math.isfinite(v) else 0.0 for v in values]

    upper = None if s.upper is None else clean(s.upper)
    return Bars(clean(s.values), s.color, s.label, upper)


# RdBu: blue for a cell that gained samples, red for one that lost them, white for no change
_NEGATIVE, _ZERO, _POSITIVE = (178, 24, 43), (247, 247, 247), (33, 102, 172)


def diverging(value: float, limit: float) -> str:
    """The colour of `value` on a red-white-blue scale from -limit to +limit."""
    t = max(-1.0, min(1.0, value / limit)) if limit else 0.0
    end = _POSITIVE if t > 0 else _NEGATIVE
    rgb = (round(z + (e - z) * abs(t)) for z, e in zip(_ZERO, end, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def heatmap(
    matrix: Sequence[Sequence[float]],
    labels: Sequence[str],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> str:
    """A square matrix of signed counts: a cell per (row, column) coloured on a diverging
    scale, its non-zero value written in it, and a colour key."""
    n = len(labels)
    limit = max((abs(v) for r in matrix for v in r), default=0) or 1
    widest = max((text_width(t) for t in labels), default=0)
    cell = int(max(22, widest + 6))  # the column ids fit under their cells
    left = 24 + widest + 6
    top = 28
    key_x = left + n * cell + 16
    width = int(max(key_x + 24 + text_width(f"+{limit:g}"), text_width(title, bold=True) + 2 * PAD,
                    left + text_width(xlabel) + PAD))  # fmt: skip
    height = top + max(n * cell, 90) + 44  # the colour key is at least 90 px tall
    out = [_open(width, height), _text(width / 2, 16, title, anchor="middle", weight="600")]
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            x, y = left + j * cell, top + i * cell
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="{diverging(v, limit)}"/>'
            )
            if v:
                out.append(_text(x + cell / 2, y + cell / 2 + 4, f"{int(v):+d}", anchor="middle"))
    for i, name in enumerate(labels):
        out.append(_text(left - 6, top + i * cell + cell / 2 + 4, name, anchor="end"))
        out.append(_text(left + i * cell + cell / 2, top + n * cell + 14, name, anchor="middle"))
    out.append(
        f'<rect x="{left}" y="{top}" width="{n * cell}" height="{n * cell}" fill="none" '
        'stroke="#9aa3af" stroke-width="0.8"/>'
    )
    out.append(_text(left + n * cell / 2, height - 8, xlabel, anchor="middle"))
    out.append(
        f'<text x="12" y="{top + n * cell / 2:.1f}" font-size="{FONT}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + n * cell / 2:.1f})">{esc(ylabel)}</text>'
    )
    steps = 9  # the key: -limit at the bottom to +limit at the top
    key_h = max(n * cell, 90) / steps
    for s in range(steps):
        value = limit * (1 - 2 * s / (steps - 1))
        out.append(
            f'<rect x="{key_x}" y="{top + s * key_h:.1f}" width="12" height="{key_h:.1f}" '
            f'fill="{diverging(value, limit)}"/>'
        )
    out.append(_text(key_x + 16, top + 9, f"+{limit:g}"))
    out.append(_text(key_x + 16, top + steps * key_h, f"-{limit:g}"))
    out.append("</svg>")
    return "".join(out)


def chart(*svgs: str) -> str:
    """Charts in one frame, side by side where the page is wide enough."""
    return '<div class="chart">' + "".join(svgs) + "</div>"


def _open(width: float, height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="system-ui,sans-serif" '
        f'font-size="{FONT}" fill="#1d2430">'
    )


def _text(x: float, y: float, text: str, anchor: str = "start", weight: str = "") -> str:
    bold = f' font-weight="{weight}"' if weight else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{bold}>{esc(text)}</text>'


def _vline(
    x: float, y0: float, y1: float, color: str, dashed: bool = False, width: float = 0.8
) -> str:
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    return (
        f'<path d="M{x:.1f} {y0:.1f}V{y1:.1f}" stroke="{esc(color)}" stroke-width="{width}"{dash}/>'
    )
