"""The pieces every compress page is made of: one stylesheet, escaping, tables, matplotlib
figures as inline SVG (scatter plots; bars and heat maps: charts.py), and the colour of each
runtime (one colour, one meaning, on every chart of every page)."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterable
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px}
.meta{color:#5b6575;margin-bottom:16px}
.verdict{padding:12px 16px;border-radius:6px;margin:12px 0;font-weight:600}
.pass{background:#e3f5e8;border:1px solid #67b07c}.fail{background:#fbe6e6;border:1px solid #d06464}
.verdict ul{margin:6px 0 0;font-weight:400}
.warn{background:#fff5dc;border:1px solid #d8b24a;padding:8px 14px;border-radius:6px;margin:8px 0}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d8dce3;padding:3px 8px;text-align:right;white-space:nowrap}
/* names (artifacts, recipes, layers) wrap so a wide table fits the page at 1280 px */
td.l{white-space:normal;overflow-wrap:break-word}th{white-space:normal}
th{background:#eef1f5}td.l,th.l{text-align:left}
tr.chosen td{background:#eef7ff}
.chart{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:6px;margin:8px 0;
display:inline-flex;flex-wrap:wrap;gap:8px;max-width:100%;box-sizing:border-box}
.chart svg{display:block;max-width:100%;height:auto}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;background:#eef1f5;
border-radius:4px}code{padding:1px 4px}pre{padding:8px;overflow:auto}
.wide{overflow-x:auto;max-width:100%}details{margin:6px 0}summary{cursor:pointer}
.bad{color:#b02a2a;font-weight:600}.good{color:#1f7a3a}
"""

# One colour per runtime (runtime_colors), in the registry's order.
PALETTE = ("#4c78a8", "#f58518", "#72b7b2", "#b279a2", "#9d755d", "#e7ba52", "#17becf", "#8c6d31")

# Colours that are not a runtime's (never in PALETTE): raw and gzip sizes, accuracy lost and
# gained, a gate's line, a value drawn at its cap (or an infeasible trial).
RAW, GZIP = "#c3c9d2", "#5d6673"
LOST, GAINED, GATE, CAPPED = "#c62828", "#2e7d32", "#222222", "#bdbdbd"


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def num(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return esc(value)


def table(
    header: list[str], rows: Iterable[list[Any]], left: int = 1, classes: list[str] | None = None
) -> str:
    """An HTML table (scrolling sideways when wide); the first `left` columns left-aligned;
    cells are escaped."""
    out = ['<div class="wide"><table><tr>']
    out += [f'<th class="{"l" if i < left else ""}">{esc(h)}</th>' for i, h in enumerate(header)]
    out.append("</tr>")
    for n, row in enumerate(rows):
        cls = f' class="{classes[n]}"' if classes and classes[n] else ""
        out.append(f"<tr{cls}>")
        out += [f'<td class="{"l" if i < left else ""}">{esc(c)}</td>' for i, c in enumerate(row)]
        out.append("</tr>")
    out.append("</table></div>")
    return "".join(out)


def svg(fig: Any) -> str:
    """A matplotlib figure as inline SVG (text kept as text, stable ids), and closed."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = re.sub(r"<metadata>.*?</metadata>", "", buf.getvalue(), flags=re.S)
    return '<div class="chart">' + text[text.index("<svg") :] + "</div>"


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "compress", "font.size": 9})
    return plt


def page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body><main>"
        + "\n".join(body)
        + "</main></body></html>\n"
    )


def runtime_colors(runtimes: Iterable[str]) -> dict[str, str]:
    """A colour per runtime, in the order given (a record's own list: the registry's order), so
    a new backend gets the next colour with no edit here. The size chart's raw/gzip bars use
    grey tones, never a runtime's colour."""
    names = list(dict.fromkeys(runtimes))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
