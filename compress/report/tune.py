"""tune.html, pareto.png's figure and the terminal table of a tune, from its record (tune.json):
the record carries its space, its runtimes and its fronts, so nothing here knows how a tune is
run."""

from __future__ import annotations

from typing import Any

from compress.core.text import columns
from compress.report.markup import CAPPED, GATE, esc, num, page, pyplot, runtime_colors, svg, table


def record_runtimes(record: dict[str, Any]) -> list[str]:
    """The runtimes of a tune record: its own list (older records: their fronts' keys)."""
    return list(record.get("runtimes") or record.get("fronts") or [])


def record_quality(record: dict[str, Any]) -> dict[str, Any]:
    """How the record reads a trial's accuracy cost (older records: drift in points)."""
    return record.get("quality") or {"key": "drift", "label": "drift vs the float model (pts)",
                                     "unit": "pts", "budget": record["max_drift"]}  # fmt: skip


def tune_page(record: dict[str, Any]) -> str:
    """tune.html for a tune record (tune.json)."""
    fp32 = record.get("fp32_weight_bytes")
    space, runtimes = list(record["space"]), record_runtimes(record)
    q = record_quality(record)
    cost = f"{q['key'].replace('_', ' ')} {q['unit']}"
    passed = record.get("passed")
    verdict = (
        '<div class="verdict pass">A trial within the budget was found for every runtime</div>'
        if passed
        else '<div class="verdict fail">NO trial met the budget for '
        + esc(", ".join(k for k, b in record["best"].items() if not b["within_budget"]) or "any")
        + ": the closest is shown</div>"
    )
    body = [
        f"<h1>compress tune: {esc(record['target'])}</h1>",
        f'<div class="meta">tune {esc(record["tune_id"])} · objectives '
        f"{esc(', '.join(record['objectives']))} · budget: {esc(q['key'])} ≤ "
        f"{num(q['budget'], 'g')} {esc(q['unit'])} · {len(record['trials'])} trials</div>",
        verdict,
        "<h2>Recommended artifacts</h2>",
    ]
    rows = []
    for name, b in record["best"].items():
        ratio = f"{fp32 / b['size_gzip_bytes']:.1f}x" if fp32 and b.get("size_gzip_bytes") else "-"
        rows.append([name, b["trial"], b["artifact"], b.get("recipe"),
                     f"{b.get('size_gzip_bytes') or 0:,}", ratio,
                     num(b.get("latency_ms_b1"), ".3f"), num(b.get(q["key"]), "+.2f"),
                     "yes" if b["within_budget"] else "NO"])  # fmt: skip
    body.append(table(["best", "trial", "artifact", "recipe", "gzip (B)", "ratio",
                       "p50 b1 ms", cost, "within budget"], rows))  # fmt: skip
    body.append("<h2>Pareto fronts</h2>")
    body.append(_pareto_svg(record))
    body.append(f"<p>{esc(record.get('latency'))}</p>")
    body.append("<h2>Trials</h2>")
    trial_rows = []
    for t in record["trials"]:
        p = t.get("params") or {}
        cells = [t["number"], t["state"], *(p.get(k) for k in space)]
        for runtime in runtimes:
            m = (t.get("runtimes") or {}).get(runtime) or {}
            gzip = f"{m['size_gzip_bytes']:,}" if m.get("size_gzip_bytes") else "-"
            cells += [gzip, num(m.get("latency_ms_b1"), ".3f"), num(m.get(q["key"]), "+.2f")]
        cells += [num(t.get("seconds"), ".1f"),
                  f"same as {t['same_as']}" if "same_as" in t else t.get("error", "")]  # fmt: skip
        trial_rows.append(cells)
    header = ["trial", "state", *space]
    for runtime in runtimes:
        header += [f"{runtime} gzip", f"{runtime} p50 ms", f"{runtime} {q['key']}"]
    body.append(table([*header, "seconds", "note"], trial_rows, left=2))
    return page(f"compress tune: {record['target']} {record['tune_id']}", body)


def _pareto_svg(record: dict[str, Any]) -> str:
    return svg(pareto_figure(record))


def pareto_figure(record: dict[str, Any]) -> Any:
    """Every finished trial per runtime (gzip size or latency against drift, or a language
    model's perplexity increase), the front joined, the budget drawn."""
    plt = pyplot()
    q = record_quality(record)
    objective = record["objectives"][0]
    key = {"size": "size_gzip_bytes", "latency": "latency_ms_b1"}[objective]
    runtimes = record_runtimes(record)
    colors = runtime_colors(runtimes)
    fig, axes = plt.subplots(1, len(runtimes), figsize=(11, 4.2), squeeze=False)
    for ax, runtime in zip(axes[0], runtimes, strict=True):
        pts = [
            (
                t["runtimes"][runtime][key],
                t["runtimes"][runtime].get(q["key"], 0.0),
                t["runtimes"][runtime]["feasible"],
            )
            for t in record["trials"]
            if t["state"] == "COMPLETE" and t["runtimes"].get(runtime, {}).get(key)
        ]
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                s=18,
                c=[colors[runtime] if p[2] else CAPPED for p in pts],
                label="trials",
            )
        front = record["fronts"].get(runtime, [])
        if front:
            ax.plot(
                [p[key] for p in front],
                [p.get(q["key"], 0.0) for p in front],
                "o-",
                color=colors[runtime],
                label="Pareto front",
            )
        ax.axhline(q["budget"], color=GATE, ls="--", label=f"budget ({q['budget']:g} {q['unit']})")
        ax.set_xscale("log")
        ax.set_xlabel("gzip size (bytes)" if objective == "size" else "p50 latency, batch 1 (ms)")
        ax.set_ylabel(q["label"])
        ax.set_title(f"{record['target']}: {runtime}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def tune_table(record: dict[str, Any]) -> str:
    """The fronts and the recommendations as a terminal table."""
    fp32 = record.get("fp32_weight_bytes")
    q = record_quality(record)
    lines = []
    header = [
        "runtime",
        "trial",
        "prune",
        "cluster",
        "quant",
        "qat",
        "gzip (B)",
        "ratio",
        "p50 b1 ms",
        f"{q['key'].replace('_', ' ')} {q['unit']}",
    ]
    rows = []
    for runtime, front in record["fronts"].items():
        for p in front:
            ratio = f"{fp32 / p['size_gzip_bytes']:.1f}x" if fp32 else "-"
            lat = p["latency_ms_b1"]
            rows.append(
                [
                    runtime,
                    str(p["trial"]),
                    str(p["params"]["prune"]),
                    str(p["params"]["cluster"]),
                    str(p["params"]["quantize"]),
                    str(p["params"]["qat"]),
                    f"{p['size_gzip_bytes']:,}",
                    ratio,
                    "-" if lat is None else f"{lat:.3f}",
                    f"{p.get(q['key'], 0.0):+.2f}",
                ]
            )
    lines.append(columns(header, rows))
    done = sum(t["state"] == "COMPLETE" for t in record["trials"])
    lines.append(
        f"{done} trials finished; Pareto front per runtime above (within "
        f"{q['budget']:g} {q['unit']} {q['key'].replace('_', ' ')})"
    )
    for name, b in record["best"].items():
        tag = "" if b["within_budget"] else "  (NO trial met the budget: closest shown)"
        lines.append(
            f"best {name}: trial {b['trial']} {b['artifact']} "
            f"{b['size_gzip_bytes']:,} B gzip, {q['key'].replace('_', ' ')} "
            f"{b.get(q['key'], 0.0):+.2f} {q['unit']}{tag}"
        )
    return "\n".join(lines)
