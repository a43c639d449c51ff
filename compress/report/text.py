"""The terminal and markdown forms of the records compress writes: a run's table and notes,
report.md, the summary over several runs, `bench`'s and `diff`'s tables. They render records;
how the numbers were measured is the measuring modules' business."""

from __future__ import annotations

import json
from typing import Any

from compress.core.text import columns
from compress.measure import sensitivity
from compress.report.fields import fields_table


def _fmt(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    artifacts = report["verification"]["artifacts"]
    multi = bool(artifacts) and len(artifacts[0]["heads"]) > 1
    numeric = any(m.get("task") == "regress" for a in artifacts for m in a["heads"].values())
    lm = any(m.get("task") == "lm" for a in artifacts for m in a["heads"].values())
    header = ["artifact", "runtime"] + (["head"] if multi else []) + [
        "size (B)", "gzip (B)", "ratio", "bits/w", "acc %", "drift pts", "agree %", "max|diff|",
    ] + (["rel err"] if numeric else []) + (["ppl", "ppl +%"] if lm else []) + [
        "p50 b1 ms", "p50 b32 ms", "speedup b1", "speedup b32",
    ] + (["gen tok/s", "gen speedup"] if lm else [])  # fmt: skip
    rows = []
    for a in report["verification"]["artifacts"]:
        lat, spd = a.get("latency_ms", {}), a.get("speedup", {})
        for i, (head, m) in enumerate(a["heads"].items()):
            first = i == 0
            rows.append(
                [a["name"] if first else "", a["runtime"] if first else ""]
                + ([head] if multi else [])
                + [
                    f"{a['size_bytes']:,}" if first else "",
                    f"{a['size_gzip_bytes']:,}" if first else "",
                    f"{a['compression_ratio']:.1f}x" if first else "",
                    _fmt(a.get("bits_per_weight"), ".1f") if first else "",
                    _fmt(m.get("accuracy"), ".2f"),
                    _fmt(m.get("drift"), "+.2f"),
                    _fmt(m.get("agreement"), ".2f"),
                    f"{m['max_abs_diff']:.4f}",
                ]
                + ([_fmt(m.get("relative_error"), ".4f")] if numeric else [])
                + (
                    [_fmt(m.get("perplexity"), ".4f"), _fmt(m.get("ppl_increase"), "+.2f")]
                    if lm
                    else []
                )
                + [
                    _fmt((lat.get("b1") or {}).get("p50_ms"), ".3f") if first else "",
                    _fmt((lat.get("b32") or {}).get("p50_ms"), ".3f") if first else "",
                    _fmt(spd.get("b1"), ".2f") + ("x" if spd.get("b1") else "") if first else "",
                    _fmt(spd.get("b32"), ".2f") + ("x" if spd.get("b32") else "") if first else "",
                ]
                + (_generation_cells(a.get("generation")) if lm and first else [])
                + (["", ""] if lm and not first else [])
            )
    return header, rows


def _generation_cells(g: dict[str, Any] | None) -> list[str]:
    if not g:
        return ["-", "-"]
    speedup = g.get("speedup")
    return [_fmt(g.get("tokens_per_s"), ".1f"), "-" if speedup is None else f"{speedup:.2f}x"]


def lm_lines(report: dict[str, Any]) -> list[str]:
    """For a language model: the unigram baseline, what the speed columns mean, and how the
    generated tokens compare with the float model's."""
    v = report["verification"]
    rows = [a for a in v["artifacts"] if any(m.get("task") == "lm" for m in a["heads"].values())]
    if not rows:
        return []
    build = (report.get("stages") or {}).get("build") or {}
    out = []
    if build.get("unigram_perplexity") is not None:
        out.append(f"lm: unigram baseline perplexity {build['unigram_perplexity']:.2f} on the "
                   "held-out tokens (a model that ignores context)")  # fmt: skip
    gens = [(a["name"], a["generation"]) for a in rows if a.get("generation")]
    if gens:
        g = gens[0][1]
        out.append(
            f"lm: p50 b1 is the prefill of one {g['context']}-token context; generation: "
            f"{g['new_tokens']} new tokens, {g['method']}"
        )
        out.append("lm: generated tokens equal to the Keras float model's: " + ", ".join(
            f"{name} {g['agreement_with_keras']:.0f}%" for name, g in gens))  # fmt: skip
    return out


def render_table(report: dict[str, Any]) -> str:
    header, rows = table_rows(report)
    lines = [columns(header, rows, left=2)]
    v = report["verification"]
    lines.append(
        f"{report['model']}: {v['test_samples']} held-out samples, {v['threads']} thread(s), "
        f"CPU {report['environment']['cpu']}"
    )
    source = source_line(report)
    if source:
        lines.append(source)
    lines += lm_lines(report)
    if v.get("baseline_accuracy"):
        base = ", ".join(f"{h} {acc:.2f}%" for h, acc in v["baseline_accuracy"].items())
        lines.append(f"baseline (float model before prune/cluster): {base}")
    for a in v["artifacts"] if v.get("baseline_accuracy") else []:  # after prune/cluster
        if a.get("sparsity"):
            lines.append(f"{a['name']}: weight sparsity {a['sparsity']:.3f}")
    lines += notes(report)
    return "\n".join(lines)


def source_line(report: dict[str, Any]) -> str | None:
    """How a Keras 3 model or a SavedModel got in: a translation to tf_keras and how exactly it
    was proven, or the signature that is the reference (None for a tf_keras model)."""
    build = (report.get("stages") or {}).get("build") or {}
    sm = build.get("savedmodel")
    t = build.get("keras3")
    if sm and sm.get("reason") and t:  # a Keras 3 model with no tf_keras twin
        return (
            f"source: a Keras {t['keras_version']} model run as its own SavedModel export "
            f"(post-training path only: {sm['reason']}); outputs equal within max |difference| "
            f"{t['max_abs_difference']:.3g} on {t['samples']} held-out samples (tolerance "
            f"{t['tolerance']:g}); every artifact below is compared with the export"
        )
    if sm:
        return (
            f"source: SavedModel '{sm['directory']}', signature '{sm['signature']}' (inputs "
            f"{', '.join(sm['inputs'])}; outputs {', '.join(sm['outputs'])}); no Keras layers, "
            "so the post-training path only; every artifact below is compared with the "
            "signature's own outputs"
        )
    if not t:
        return None
    return (
        f"source: a Keras {t['keras_version']} model, translated to {t['translated_to']}; "
        f"outputs equal within max |difference| {t['max_abs_difference']:.3g} on "
        f"{t['samples']} held-out samples (tolerance {t['tolerance']:g}); every artifact "
        "below is compared with the translation"
    )


def recipe_note(name: str, recipe: dict[str, Any]) -> str | None:
    """One line on a recipe chosen by measurement: the winner and what the others measured."""
    candidates = recipe.get("candidates") or []
    chosen = next((c for c in candidates if c.get("chosen")), None)
    if chosen is None:
        return None
    others = "; ".join(
        f"{c['id']} {c['speedup_b1']:.2f}x" + (f": {c['lost']}" if "lost" in c else "")
        if "speedup_b1" in c
        else f"{c['id']} skipped: {_short(c.get('error') or 'not measured')}"
        for c in candidates
        if c is not chosen
    )
    return (
        f"{name}: recipe {chosen['id']} chosen: {chosen['speedup_b1']:.2f}x vs fp32 at batch 1, "
        f"{chosen['agreement']:.1f}% agreement"
        + (f", perplexity {chosen['ppl_increase']:+.2f}%" if "ppl_increase" in chosen else "")
        + f" on training samples (others: {others})"
    )


def _short(error: str) -> str:
    """A candidate's error without the exception type and quoted log lines (the report has
    them in full)."""
    error = error.split("; its last log lines:")[0]
    return error.removeprefix("WorkerCrashed: ")


def notes(report: dict[str, Any]) -> list[str]:
    """What the table cannot show: artifacts not produced, recipes chosen by measurement,
    weights a quantizer left float."""
    out = [f"WARNING: {w}" for w in report["verification"].get("warnings", [])]
    out += [f"skipped {s['name']} ({s['runtime']}): {s['reason']}" for s in report["skipped"]]
    for a in report["verification"]["artifacts"]:
        line = recipe_note(a["name"], a["recipe"])
        if line:
            out.append(line)
        fallback = a["recipe"].get("fallback")
        if fallback:
            kept = ", ".join(fallback["kept_float"]) or "nothing"
            out.append(
                f"fallback {a['name']}: drift {fallback['drift_before']:.2f} pts > max_drift "
                f"{fallback['max_drift']:g} on {fallback['samples']} training samples; kept "
                f"{fallback.get('kept_at', 'float')}: {kept}; drift after: "
                f"{fallback['drift_after']:.2f} pts"
                + (f" ({fallback['note']})" if fallback.get("note") else "")
            )
        worst = sensitivity.summary((a.get("layer_errors") or {}).get("layers"))
        if worst:
            out.append(f"layers {a['name']}: worst SQNR vs fp32 (dB, higher is better): {worst}")
        line = profile_line(a["name"], a.get("op_profile"))
        if line:
            out.append(line)
        if a.get("external_data"):
            ext = a["external_data"]
            out.append(
                f"note {a['name']}: its weights are in {ext['file']} ({ext['size_bytes']:,} B, "
                "ONNX external data; keep the two files together), counted in its size"
            )
        if a.get("left_float"):
            out.append(
                f"note {a['name']}: weights left float32 in {', '.join(a['left_float'])} "
                "(not quantized by this mode or the chosen recipe)"
            )
    return out


def render_summary(reports: list[dict[str, Any]], errors: dict[str, str]) -> str:
    """One table over several runs: model x artifact x head."""
    header = ["model", "artifact", "head", "acc %", "drift pts", "speedup b1", "status"]
    rows = []
    for rep in reports:
        failed = " ".join(rep["verification"]["failures"])
        for a in rep["verification"]["artifacts"]:
            for head, m in a["heads"].items():
                status = "FAIL" if a["name"] in failed else "ok"
                speedup = (a.get("speedup") or {}).get("b1")
                if m.get("task") == "regress":
                    score, change = f"rel err {m['relative_error']:.4f}", "-"
                else:
                    score, change = f"{m['accuracy']:.2f}", f"{m['drift']:+.2f}"
                rows.append([rep["model"], a["name"], head, score, change,
                             _fmt(speedup, ".2f"), status])  # fmt: skip
        for s in rep.get("skipped", []):
            rows.append([rep["model"], s["name"], "-", "-", "-", "-", "skipped"])
    for model, message in errors.items():
        rows.append([model, "-", "-", "-", "-", "-", f"ERROR: {message}"])
    return columns(header, rows)


def render_markdown(report: dict[str, Any]) -> str:
    header, rows = table_rows(report)
    v = report["verification"]
    out = [
        f"# compress report: {report['model']} ({report['run_id']})",
        "",
        f"- held-out samples: {v['test_samples']}; threads: {v['threads']}; "
        f"CPU: {report['environment']['cpu']}",
        f"- gates: max drift {v['max_drift']} pts, max error {v.get('max_error')}, "
        f"min speedup {v['min_speedup']}; "
        f"result: **{'passed' if not v['failures'] else 'FAILED'}**",
        *([f"- {source}"] if (source := source_line(report)) else []),
        "",
        "| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", "## Pipeline", ""]
    for s in report["pipeline"]:
        params = ", ".join(f"{k}={v}" for k, v in s["params"].items())
        out.append(f"1. `{s['stage']}` {params}")
    out += ["", "## Weights (counted in each file)", ""]
    out += ["| artifact | tensor | shape | dtype | sparsity | distinct | max per channel |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for a in v["artifacts"]:
        for t in (a.get("weights") or {}).get("tensors", [])[:4]:
            out.append(
                f"| {a['name']} | `{t['name']}` | {t['shape']} | {t['dtype']} | "
                f"{t['sparsity']:.4f} | {t['unique']} | {t['unique_per_channel_max']} |"
            )
    for stage in ("prune", "cluster"):
        if stage in report.get("stages", {}):
            out += ["", f"{stage}: `{json.dumps(report['stages'][stage])}`"]
    if v.get("baseline_accuracy"):
        out += ["", f"Baseline float accuracy before prune/cluster: {v['baseline_accuracy']}"]
    out += ["", "## Recipes", ""]
    for a in v["artifacts"]:
        r = a["recipe"]
        knobs = ", ".join(f"{k}={val}" for k, val in r["knobs"].items())
        out.append(
            f"- `{a['name']}`: `{r['id']}` — {r['description']}" + (f" ({knobs})" if knobs else "")
        )
    if notes(report):
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes(report)]
    if v["failures"]:
        out += ["", "## Gate failures", ""] + [f"- {f}" for f in v["failures"]]
    out += ["", "## Stage times (s)", ""]
    out += [f"- {k}: {t:.2f}" for k, t in report["stage_seconds"].items()]
    out += ["", "## Fields", "", *fields_table()]
    return "\n".join(out) + "\n"


def bench_table(result: dict[str, Any]) -> str:
    header = ["artifact", "runtime", "thr", "b1 p50", "b1 p90", "b1 cold", "b32 p50", "b32 p90",
              "b32 cold", "img/s b32", "speedup b1", "speedup b32"]  # fmt: skip
    lines = []
    for e in result["artifacts"]:
        b1, b32 = e.get("b1"), e.get("b32")

        def f(b, *keys, fmt=".3f"):
            v = b
            for k in keys:
                v = None if v is None else v.get(k)
            return "-" if v is None else format(v, fmt)

        lines.append([e["name"], e["runtime"], str(e["threads"]), f(b1, "warm", "p50_ms"),
                      f(b1, "warm", "p90_ms"), f(b1, "cold", "p50_ms"), f(b32, "warm", "p50_ms"),
                      f(b32, "warm", "p90_ms"), f(b32, "cold", "p50_ms"),
                      f(b32, "throughput_per_s", fmt=".0f"), f(b1, "speedup", fmt=".2f"),
                      f(b32, "speedup", fmt=".2f")])  # fmt: skip
    if result.get("generation"):
        header += ["gen tok/s", "gen speedup"]
        for line, e in zip(lines, result["artifacts"], strict=True):
            gen = e.get("generation")
            line += [f(gen, "tokens_per_s", fmt=",.0f"), f(gen, "speedup", fmt=".2f")]
    out = [columns(header, lines, left=2)]
    out.append(f"{result['model']}: latency in ms; CPU {result['cpu']}; {result['notes']}")
    if result.get("generation"):
        g = result["generation"]
        out.append(f"generation: {g['new_tokens']} new tokens, head {g['head']}; {g['method']}")
    return "\n".join(out)


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def diff_table(result: dict[str, Any]) -> str:
    """The comparison as a terminal table, then notes and regressions."""
    header = ["row", "artifact (base -> new)", "recipe", "gzip B", "Δgzip", "Δsize", "Δp50 b1",
              "Δp50 b32", "Δgen ms/tok", "heads (Δ acc pts / Δ rel err / ppl %)"]  # fmt: skip
    lines_: list[list[str]] = []
    for r in result["rows"]:
        if "only_in" in r:
            lines_.append([r["row"], f"{r['artifact']} only in {r['only_in']}", *["-"] * 8])
            continue
        heads = []
        for name, h in r["heads"].items():
            if "perplexity" in h and h["perplexity"]["pct"] is not None:
                heads.append(f"{name} ppl {h['perplexity']['pct']:+.2f}%")
            elif "accuracy" in h and h["accuracy"]["delta"] is not None:
                heads.append(f"{name} {h['accuracy']['delta']:+.2f}")
            elif "relative_error" in h and h["relative_error"]["delta"] is not None:
                heads.append(f"{name} {h['relative_error']['delta']:+.4f}")
        art = r["artifact"]
        rec = r["recipe"]
        lines_.append([
            r["row"],
            art["base"] if art["base"] == art["new"] else f"{art['base']} -> {art['new']}",
            rec["base"] if rec["base"] == rec["new"] else f"{rec['base']} -> {rec['new']}",
            f"{r['size_gzip_bytes']['base']:,} -> {r['size_gzip_bytes']['new']:,}",
            _fmt_pct(r["size_gzip_bytes"]["pct"]),
            _fmt_pct(r["size_bytes"]["pct"]),
            _fmt_pct((r["latency_ms"].get("b1") or {}).get("pct")),
            _fmt_pct((r["latency_ms"].get("b32") or {}).get("pct")),
            _fmt_pct(((r.get("generation") or {}).get("ms_per_token") or {}).get("pct")),
            ", ".join(heads) or "-",
        ])  # fmt: skip
    out = [columns(header, lines_)]
    out += [f"note: {n}" for n in result["notes"]]
    out += [f"REGRESSION: {r}" for r in result["regressions"]]
    if not result["regressions"]:
        gated = [k for k, v in result["gates"].items() if v is not None]
        out.append("no regression" + (f" ({', '.join(gated)} checked)" if gated else
                                       " (no gate given: deltas only)"))  # fmt: skip
    return "\n".join(out)


def profile_line(name: str, profile: dict[str, Any] | None, top: int = 6) -> str | None:
    """One artifact's op profile in a line: the op types that took the most time per call
    (onnxruntime), or which op types XNNPACK ran and which the built-in kernels did (LiteRT)."""
    if not profile:
        return None
    if "unavailable" in profile:
        return f"ops {name}: no profile ({profile['unavailable']})"
    rows = profile["op_types"]
    if rows and "ms" in rows[0]:
        shown = ", ".join(f"{r['op']} x{r['nodes']} {r['ms']:.3f} ms ({r['share']:.0f}%)"
                          for r in rows[:top])  # fmt: skip
        more = f", {len(rows) - top} more types" if len(rows) > top else ""
        return f"ops {name} ({profile['tool']}, per batch-1 call): {shown}{more}"
    by_kernel: dict[str, list[str]] = {}
    for r in rows:
        for kernel, n in r["kernels"].items():
            by_kernel.setdefault(kernel, []).append(r["op"] + (f" x{n}" if n > 1 else ""))
    kernels = "; ".join(f"{k}: {', '.join(ops)}" for k, ops in by_kernel.items())
    return f"kernels {name}: {kernels}"
