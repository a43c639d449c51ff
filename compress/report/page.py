"""report.html: one self-contained page per run from its report dict (tune.html: report/tune.py).

Inline CSS, charts as inline SVG (bars and heat maps written by report/charts.py; the language
model's perplexity scatter drawn by matplotlib); no script, font or image is fetched, so the
file opens offline and can be attached to a CI job as it is. Every string that came from a
model, a data file or a config is escaped: a layer named `<script>` is text here. Colours: a
runtime's own (markup.runtime_colors) on every chart of it; greys for raw/gzip sizes; red and
green for accuracy lost and gained; a dashed dark line for a gate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.report import charts
from compress.report.markup import (
    CAPPED,
    GAINED,
    GATE,
    GZIP,
    LOST,
    RAW,
    esc,
    num,
    page,
    pyplot,
    runtime_colors,
    svg,
    table,
)
from compress.report.text import source_line

SQNR_CAP_DB = 100.0  # layers above it are drawn at it: no measurable quantization error
CONFUSION_CLASSES = 30  # most classes a confusion difference draws


def run_page(report: dict[str, Any]) -> str:
    """report.html for one run's report dict."""
    v = report["verification"]
    arts = v["artifacts"]
    body = [
        f"<h1>compress report: {esc(report['model'])}</h1>",
        f'<div class="meta">run {esc(report["run_id"])} · {esc(report["created"])} · '
        f"data {esc((report.get('data') or {}).get('name'))} · "
        f"{esc(v.get('test_samples'))} held-out samples</div>",
        _verdict(report),
        "<h2>Artifacts</h2>",
        _artifact_table(report),
        "<h2>Size and latency</h2>",
        _size_latency_charts(arts),
        "<h2>Accuracy and drift per head</h2>",
        _heads(report),
        "<h2>Confusion difference against the float model</h2>",
        _confusion(report),
        "<h2>Per layer: weights and quantization sensitivity</h2>",
        _layers(arts),
        "<h2>Kernels and time per op type</h2>",
        _op_profiles(arts),
        "<h2>Recipe candidates</h2>",
        _candidates(arts),
        "<h2>Environment and reproduction</h2>",
        _environment(report),
    ]
    return page(f"compress: {report['model']} {report['run_id']}", body)


def _verdict(report: dict[str, Any]) -> str:
    v = report["verification"]
    failures, warnings = v.get("failures", []), v.get("warnings", [])
    if report.get("passed"):
        head = '<div class="verdict pass">PASSED: every artifact is within its gates'
    else:
        head = f'<div class="verdict fail">FAILED: {len(failures)} gate(s) missed'
    gates = (
        f"max drift {num(v.get('max_drift'), 'g')} pts, max numeric error "
        f"{num(v.get('max_error'), 'g')}, min speedup "
        f"{'none' if v.get('min_speedup') is None else num(v.get('min_speedup'), 'g')}"
    )
    if "lm" in (v.get("tasks") or {}).values():
        gates += f", max perplexity increase {num(v.get('max_ppl_increase'), 'g')}%"
    items = "".join(f"<li>{esc(f)}</li>" for f in failures)
    out = [f"{head}<div style='font-weight:400'>gates: {esc(gates)}</div>"]
    if items:
        out.append(f"<ul>{items}</ul>")
    out.append("</div>")
    for w in warnings:
        out.append(f'<div class="warn">WARNING: {esc(w)}</div>')
    for s in report.get("skipped", []):
        out.append(
            f'<div class="warn">SKIPPED {esc(s.get("artifact") or s.get("name"))}: '
            f"{esc(s.get('reason'))}</div>"
        )
    return "\n".join(out)


def _head_cell(m: dict[str, Any]) -> str:
    if m.get("task") == "lm":
        return f"ppl {num(m.get('perplexity'), '.3f')} ({num(m.get('ppl_increase'), '+.2f')}%)"
    if m.get("task") == "regress":
        return f"rel err {num(m.get('relative_error'), '.4f')}"
    return f"{num(m.get('accuracy'))}% ({num(m.get('drift'), '+.2f')})"


def _artifact_table(report: dict[str, Any]) -> str:
    arts = report["verification"]["artifacts"]
    heads = list(next((a["heads"] for a in arts if a.get("heads")), {}))
    header = ["artifact", "runtime", "precision", "recipe", "size (B)", "gzip (B)", "ratio",
              "bits/weight"]  # fmt: skip
    tasks = report["verification"].get("tasks") or {}
    header += [f"{h}: ppl (+%)" if tasks.get(h) == "lm" else f"{h}: acc (drift)" for h in heads]
    header += ["p50 b1 ms", "p50 b32 ms", "speedup b1", "speedup b32"]
    generated = any(a.get("generation") for a in arts)
    if generated:
        header += ["gen tok/s", "gen speedup"]
    rows = []
    for a in arts:
        lat, sp = a.get("latency_ms") or {}, a.get("speedup") or {}
        rows.append(
            [a["name"], a["runtime"], a["precision"], a["recipe"]["id"], f"{a['size_bytes']:,}",
             f"{a['size_gzip_bytes']:,}", f"{num(a.get('compression_ratio'))}x",
             num(a.get("bits_per_weight"), ".1f")]
            + [_head_cell(a["heads"].get(h, {})) for h in heads]
            + [num((lat.get("b1") or {}).get("p50_ms"), ".3f"),
               num((lat.get("b32") or {}).get("p50_ms"), ".3f"),
               num(sp.get("b1"), ".2f"), num(sp.get("b32"), ".2f")]
            + ([num((a.get("generation") or {}).get("tokens_per_s"), ",.0f"),
                num((a.get("generation") or {}).get("speedup"), ".2f")] if generated else [])
        )  # fmt: skip
    out = table(header, rows, left=4)
    gen = next((a["generation"] for a in arts if a.get("generation")), None)
    if gen:
        out += (f"<p>gen: greedy generation of {esc(gen['new_tokens'])} new tokens from a "
                f"{esc(gen['context'])}-token context, batch 1; {esc(gen['method'])}. p50 b1 is "
                "the prefill of one context.</p>")  # fmt: skip
    return out


def _size_latency_charts(arts: list[dict[str, Any]]) -> str:
    colors = runtime_colors(a["runtime"] for a in arts)
    names = [a["name"] for a in arts]
    size = charts.bar_chart(
        names,
        [charts.Bars([a["size_bytes"] for a in arts], RAW, "raw"),
         charts.Bars([a["size_gzip_bytes"] for a in arts], GZIP, "gzip")],
        title="size per artifact", xlabel="bytes", tick_format=_bytes,
    )  # fmt: skip
    out = [charts.chart(size)]
    timed = [a for a in arts if a.get("latency_ms")]
    if timed:
        panels = []
        for batch in ("b1", "b32"):
            rows = [a["latency_ms"].get(batch) or {} for a in timed]
            if not any(r.get("p50_ms") for r in rows):
                continue  # not timed at this batch size: no empty frame
            p50 = [r.get("p50_ms") or 0 for r in rows]
            p90 = [max(r.get("p90_ms") or 0, v) for r, v in zip(rows, p50, strict=True)]
            panels.append(charts.bar_chart(
                [a["name"] for a in timed],
                [charts.Bars(p50, [colors[a["runtime"]] for a in timed], upper=p90)],
                title=f"latency, batch {batch[1:]}",
                xlabel="ms per call (bar: p50, whisker: p90)", width=500,
            ))  # fmt: skip
        if panels:
            out.append(charts.chart(*panels))
    return "\n".join(out)


def _bytes(x: float) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:g} {unit}"
    return f"{x:g} B"


def _heads(report: dict[str, Any]) -> str:
    v = report["verification"]
    arts = [a for a in v["artifacts"] if a.get("heads")]
    out = []
    heads = list(arts[0]["heads"]) if arts else []
    for h in heads:
        rows = [(a["name"], a["heads"][h]) for a in arts if h in a["heads"]]
        task = rows[0][1].get("task", "classify")
        if task == "lm":
            out.append(f"<h3>head {esc(h)} (lm)</h3>")
            out.append(_lm_head(report, h))
            continue
        if task == "regress":
            header = ["artifact", "mean abs err", "max abs diff", "rel err", "cosine", "label MAE"]
            body = [[n, num(m.get("mean_abs_error"), ".5f"), num(m.get("max_abs_diff"), ".5f"),
                     num(m.get("relative_error"), ".5f"), num(m.get("cosine"), ".5f"),
                     num(m.get("label_mae"), ".4f")] for n, m in rows]  # fmt: skip
            values, label = [m.get("relative_error") or 0 for _, m in rows], "relative error"
        else:
            header = ["artifact", "accuracy %", "drift pts", "baseline drift", "agreement %"]
            body = [[n, num(m.get("accuracy")), num(m.get("drift"), "+.2f"),
                     num(m.get("baseline_drift"), "+.2f"), num(m.get("agreement"))]
                    for n, m in rows]  # fmt: skip
            values, label = [m.get("drift") or 0 for _, m in rows], "drift (pts, + = lost)"
        out.append(f"<h3>head {esc(h)} ({esc(task)})</h3>")
        out.append(table(header, body))
        if not any(values):
            none = "no relative error" if task == "regress" else "no drift"
            out.append(
                f'<p class="good">{none}: every artifact matches the float model on '
                "this head (nothing to chart)</p>"
            )
            continue
        lines = [charts.Line(0.0, "#333333")]
        if task != "regress" and v.get("max_drift") is not None:
            lines.append(charts.Line(v["max_drift"], GATE, dashed=True, label="max drift"))
        bars = charts.Bars(values, [LOST if x > 0 else GAINED for x in values])
        drawn = charts.bar_chart([n for n, _ in rows], [bars], title=f"head {h}", xlabel=label,
                                 lines=lines)  # fmt: skip
        out.append(charts.chart(drawn))
    return "\n".join(out) or "<p>No heads were verified.</p>"


def _lm_head(report: dict[str, Any], head: str) -> str:
    """A language model's head: held-out perplexity per artifact, and perplexity increase
    against size per artifact (filled: held out, in its runtime) and per recipe its search
    measured (hollow: on the selection sample, labels its own next tokens), the gate drawn."""
    plt = pyplot()
    v = report["verification"]
    arts = [a for a in v["artifacts"] if head in a.get("heads", {})]
    body = []
    for a in arts:
        m = a["heads"][head]
        gen = a.get("generation") or {}
        body.append([a["name"], a["recipe"]["id"], num(m.get("perplexity"), ".4f"),
                     num(m.get("ppl_increase"), "+.2f"), num(m.get("bits_per_token"), ".4f"),
                     num(m.get("agreement")), num(m.get("accuracy")),
                     num(m.get("mean_abs_error"), ".5f"),
                     num(gen.get("agreement_with_keras"), ".1f")])  # fmt: skip
    header = ["artifact", "recipe", "perplexity", "ppl +%", "bits/token", "agreement %",
              "next-token acc %", "mean abs err", "generated = keras %"]  # fmt: skip
    out = [table(header, body, left=2)]
    unigram = ((report.get("stages") or {}).get("build") or {}).get("unigram_perplexity")
    if unigram is not None:
        out.append(f"<p>unigram baseline perplexity {num(unigram, '.2f')} on the held-out tokens "
                   "(a model that ignores context)</p>")  # fmt: skip
    colors = runtime_colors(a["runtime"] for a in v["artifacts"])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for a in arts:
        if a["runtime"] == "keras":
            continue
        color = colors[a["runtime"]]
        ax.scatter([a["size_bytes"]], [a["heads"][head]["ppl_increase"]], color=color, s=36,
                   zorder=3)  # fmt: skip
        ax.annotate(f"{a['recipe']['id']} ({a['runtime']})", (a["size_bytes"],
                    a["heads"][head]["ppl_increase"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")  # fmt: skip
        for c in a["recipe"].get("candidates") or []:
            if "ppl_increase" in c and "size_bytes" in c and not c.get("chosen"):
                ax.scatter([c["size_bytes"]], [c["ppl_increase"]], facecolors="none",
                           edgecolors=color, s=30)  # fmt: skip
                ax.annotate(c["id"], (c["size_bytes"], c["ppl_increase"]), fontsize=6,
                            color="#666", xytext=(4, -8), textcoords="offset points")  # fmt: skip
    ax.axhline(0, color="#333", lw=0.8)
    if v.get("max_ppl_increase") is not None:
        ax.axhline(v["max_ppl_increase"], color=GATE, ls="--", lw=1,
                   label=f"max perplexity increase {v['max_ppl_increase']:g}%")  # fmt: skip
        ax.legend(fontsize=8)
    # linear up to the gate, logarithmic past it: a broken recipe (+300%) and ones within 1%
    # are both readable
    ax.set_yscale("symlog", linthresh=max(v.get("max_ppl_increase") or 1.0, 0.1))
    lowest = min([0.0, *(y for line in ax.collections for _, y in line.get_offsets())])
    ax.set_ylim(bottom=min(-0.5, lowest * 1.5))
    ax.xaxis.set_major_formatter(lambda x, _pos: _bytes(x))
    ax.set_xlabel("file size (bytes)")
    ax.set_ylabel("perplexity increase vs the float model (%)")
    ax.set_title(f"head {head}: perplexity against size per recipe")
    out.append(svg(fig))
    out.append("<p>filled: each artifact on the held-out split in its runtime; hollow: the other "
               "recipes its search measured, on the selection sample (each window's own next "
               "tokens).</p>")  # fmt: skip
    return "\n".join(out)


def _moved_classes(diff: Any) -> Any:
    """The classes to draw of a confusion difference: all of them up to CONFUSION_CLASSES, else
    those a sample moved from or to, the most moved first, at most CONFUSION_CLASSES (in class
    order). A 1000-class matrix drawn whole is unreadable and took 90 s to render."""
    import numpy as np

    if len(diff) <= CONFUSION_CLASSES:
        return np.arange(len(diff))
    involved = np.abs(diff).sum(axis=0) + np.abs(diff).sum(axis=1)
    top = np.argsort(-involved, kind="stable")[: min(CONFUSION_CLASSES, int((involved > 0).sum()))]
    return np.sort(top)


def _confusion(report: dict[str, Any]) -> str:
    """Per classify head, each compressed artifact's confusion matrix minus the Keras float
    model's: a cell (true t, predicted p) above 0 means the artifact put more samples there."""
    import numpy as np

    from compress.measure.heads import confusion_matrix

    arts = report["verification"]["artifacts"]
    ref = next((a for a in arts if a["runtime"] == "keras"), None)
    if ref is None:
        return "<p>No float Keras model to compare with.</p>"
    out = []
    for h, m0 in ref["heads"].items():
        if m0.get("confusion") is None:
            continue
        float_matrix = confusion_matrix(m0["confusion"])  # once per head, not per artifact
        for a in arts:
            m = a.get("heads", {}).get(h, {})
            if a is ref or a["precision"] == "fp32" or m.get("confusion") is None:
                continue
            diff = confusion_matrix(m["confusion"]) - float_matrix
            moved = int(np.abs(diff).sum() // 2)
            per_class = np.diag(diff)
            changes = (
                ", ".join(f"class {i}: {int(d):+d}" for i, d in enumerate(per_class) if d)
                or "no class gained or lost a correct sample"
            )
            out.append(
                f"<h3>{esc(a['name'])}, head {esc(h)}</h3><p>{moved} of "
                f"{int(float_matrix.sum())} samples moved to another cell; correct per "
                f"class (artifact minus float): {esc(changes)}</p>"
            )
            if not moved:
                continue
            shown = _moved_classes(diff)
            if len(shown) < len(diff):
                out.append(f"<p>Drawn: {len(shown)} of the {len(diff)} classes, those whose "
                           "samples moved (the most moved first).</p>")  # fmt: skip
            names = [str(c) for c in shown]
            out.append(charts.chart(charts.heatmap(
                diff[np.ix_(shown, shown)].tolist(), names, title=f"{a['name']} − float, head {h}",
                xlabel="predicted class", ylabel="true class")))  # fmt: skip
    return "\n".join(out) or "<p>No classification head with a compressed artifact.</p>"


def _layers(arts: list[dict[str, Any]]) -> str:
    colors = runtime_colors(a["runtime"] for a in arts)
    out = []
    for a in arts:
        tensors = (a.get("weights") or {}).get("tensors") or []
        errors = (a.get("layer_errors") or {}).get("layers") or []
        why_not = (a.get("layer_errors") or {}).get("unavailable")
        if not tensors and not errors and not why_not:
            continue
        out.append(f"<h3>{esc(a['name'])}</h3>")
        if tensors:
            rows = [[t["name"], "x".join(map(str, t.get("shape", []))), t.get("dtype"),
                     f"{t.get('size', 0):,}", num(t.get("sparsity"), ".3f"),
                     t.get("unique"), t.get("unique_per_channel_max", "-")]
                    for t in tensors]  # fmt: skip
            out.append(
                "<details open><summary>weights: "
                f"{len(tensors)} tensors</summary>"
                + table(
                    [
                        "tensor",
                        "shape",
                        "dtype",
                        "values",
                        "sparsity",
                        "distinct",
                        "distinct/channel (max)",
                    ],
                    rows,
                )  # fmt: skip
                + "</details>"
            )
        if why_not:
            out.append(f"<p>Per-layer sensitivity not measured: {esc(why_not)}</p>")
        # SQNR is undefined (stored as None) where the float layer's output is all zeros on
        # the samples while the quantized one is not: named, not drawn
        undefined = [e["layer"] for e in errors if e.get("sqnr_db") is None]
        errors = [e for e in errors if e.get("sqnr_db") is not None]
        if errors:
            # an exact match (no error) reads as a very high SQNR: drawn at the cap, marked
            bars = charts.Bars(
                [min(e["sqnr_db"], SQNR_CAP_DB) for e in errors],
                [CAPPED if e["sqnr_db"] >= SQNR_CAP_DB else colors[a["runtime"]] for e in errors],
            )  # fmt: skip
            out.append(charts.chart(charts.bar_chart(
                [_short(e["layer"]) for e in errors], [bars],
                title=f"{a['name']}: quantization sensitivity per layer",
                xlabel=f"SQNR against the fp32 artifact (dB; low = sensitive; grey: "
                       f">= {SQNR_CAP_DB:g} dB, no measurable error)")))  # fmt: skip
        if undefined:
            out.append(f"<p>SQNR undefined (the fp32 output is all zeros on the samples, the "
                       f"quantized one is not): {esc(', '.join(undefined))}</p>")  # fmt: skip
    return "\n".join(out) or "<p>No per-layer data.</p>"


def _short(name: str, width: int = 48) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def _cell(value: Any) -> str:
    """A measured value as a table cell: integers with separators, floats to 4 digits."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _op_profiles(arts: list[dict[str, Any]]) -> str:
    """Per artifact, its op types with the kernels that ran them and (onnxruntime) their time
    per batch-1 call."""
    out = []
    for a in arts:
        prof = a.get("op_profile")
        if not prof:
            continue
        if "unavailable" in prof:
            out.append(f"<h3>{esc(a['name'])}</h3><p>not profiled ({esc(prof['unavailable'])})</p>")
            continue
        timed = any("ms" in r for r in prof["op_types"])
        header = ["op type", "nodes", "kernels"] + (["ms per call", "share %"] if timed else [])
        rows = [[r["op"], r["nodes"], ", ".join(f"{k} {n}" for k, n in r["kernels"].items())]
                + ([num(r.get("ms"), ".4f"), num(r.get("share"), ".1f")] if timed else [])
                for r in prof["op_types"]]  # fmt: skip
        out.append(f"<h3>{esc(a['name'])}</h3><p>{esc(prof['tool'])}</p>")
        out.append(table(header, rows))
    return "\n".join(out) or "<p>No op profile was taken (verify.profile = false).</p>"


def _candidates(arts: list[dict[str, Any]]) -> str:
    out = []
    for a in arts:
        cands = a["recipe"].get("candidates") or []
        if not cands:
            continue
        sel = a["recipe"].get("selection") or {}
        keys = list(dict.fromkeys(k for c in cands for k in c if k not in ("id", "chosen")))
        rows = [[c["id"], *(_cell(c.get(k)) for k in keys), "yes" if c.get("chosen") else ""]
                for c in cands]  # fmt: skip
        out.append(
            f"<h3>{esc(a['name'])}: {esc(a['recipe']['id'])}</h3>"
            f"<p>{esc(a['recipe'].get('description'))}</p>"
            f"<p>objective {esc(sel.get('objective'))}, agreement floor "
            f"{esc(sel.get('min_agreement'))}%, winner after each timing round: "
            f"{esc(', '.join(sel.get('rounds') or []) or '-')}</p>"
        )
        out.append(
            table(
                ["recipe", *keys, "chosen"],
                rows,
                classes=["chosen" if c.get("chosen") else "" for c in cands],
            )  # fmt: skip
        )
    return "\n".join(out) or "<p>No recipe search ran (a single recipe per artifact).</p>"


def _environment(report: dict[str, Any]) -> str:
    env = report.get("environment") or {}
    rows = [[k, env.get(k)] for k in ("python", "platform", "cpu", "cpu_count")]
    rows += [[f"package {k}", ver] for k, ver in (env.get("packages") or {}).items()]
    command = report.get("command")
    how = (
        f"<p>Reproduce: <code>{esc(command)}</code></p>"
        if command
        else "<p>Run from the Python API; the resolved pipeline below reproduces it.</p>"
    )
    seconds = report.get("stage_seconds") or {}
    stage_rows = [[k, num(s, ".2f"), (report.get("cache") or {}).get(k, "-")]
                  for k, s in seconds.items()]  # fmt: skip
    source = source_line(report)
    return (
        how
        + (f"<p>{esc(source)}</p>" if source else "")
        + table(["", "value"], rows)
        + "<h3>Stages</h3>"
        + table(["stage", "seconds", "cache"], stage_rows)
        + "<details><summary>resolved pipeline</summary><pre>"
        + esc(json.dumps(report.get("pipeline"), indent=2))
        + "</pre></details>"
    )


def rerender(directory: Path) -> Path:
    """Render DIR/report.html from DIR/report.json again (the manifest's entry follows, so the
    run directory still verifies), or a tune directory's tune.html from its tune.json. Returns
    the page written."""
    from compress.core.errors import InputError
    from compress.core.fileio import sha256_file, write_json_atomic, write_text_atomic
    from compress.report.tune import tune_page

    directory = Path(directory)
    if directory.is_file() and directory.name in ("report.json", "tune.json"):
        directory = directory.parent
    for name, page_name, render_fn in (
        ("report.json", "report.html", run_page),
        ("tune.json", "tune.html", tune_page),
    ):
        source = directory / name
        if not source.is_file():
            continue
        try:
            record = json.loads(source.read_text(encoding="utf-8"))
            text = render_fn(record)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(
                f"{source} is not a report compress can render: {type(exc).__name__}: {exc}"
            ) from None
        target = directory / page_name
        write_text_atomic(target, text)
        manifest = directory / "manifest.json"
        if manifest.is_file():
            data = json.loads(manifest.read_text(encoding="utf-8"))
            data["files"][page_name] = {
                "sha256": sha256_file(target),
                "size_bytes": target.stat().st_size,
            }
            write_json_atomic(manifest, data)
        return target
    raise InputError(
        f"'{directory}' holds no report.json or tune.json: expected a run directory "
        "(OUT/MODEL/RUN_ID) or a tune directory (OUT/tune/TARGET/TUNE_ID)"
    )
