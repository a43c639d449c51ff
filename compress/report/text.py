"""report.json, report.md and the terminal table, all rendered from one report dict.

Every number comes from the verify stage's measurements of this run's artifacts.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from typing import Any

from compress.measure import sensitivity
from compress.measure.gates import DEFAULT_MAX_ERROR, head_gate, speedup_gate
from compress.measure.weights import GZIP_LEVEL

PACKAGES = (
    "compress",
    "tensorflow-cpu",
    "tensorflow",
    "tf-keras",
    "tensorflow-model-optimization",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
    "numpy",
    "scikit-learn",
)

# What each report field means: report.json carries it, report.md and the README show it (a test
# checks the README's table is exactly this one).
FIELDS = {
    "size_bytes": "file size in bytes",
    "size_gzip_bytes": f"file size after gzip (level {GZIP_LEVEL}), bytes: sparsity and clusters "
    "pay off compressed",
    "compression_ratio": "fp32 bytes of the Keras model's weights divided by size_gzip_bytes",
    "accuracy": "top-1 accuracy on the held-out split, percent",
    "drift": "Keras float accuracy minus this artifact's, percentage points (positive = lost)",
    "baseline_drift": "accuracy of the float model before prune/cluster minus this one's, pts",
    "agreement": "percent of held-out samples whose top-1 class equals the Keras model's",
    "max_abs_diff": "largest absolute difference from the Keras model's outputs",
    "confusion": "classification heads: counts per [true class][predicted class] on the held-out "
    "split; above 100 classes {classes, cells: [[true, predicted, count]]}, non-zero cells only "
    "(report.html draws each compressed artifact's minus the float model's)",
    "task": "what a head is verified as: classify (accuracy, drift, agreement) or regress "
    "(numeric error against the Keras model), inferred or set by verify.task",
    "mean_abs_error": "numeric heads: mean absolute difference from the Keras model's outputs",
    "relative_error": "numeric heads: ||artifact - Keras|| / ||Keras|| over the held-out split; "
    "gated by max_error",
    "cosine": "numeric heads with vector outputs: mean cosine similarity to the Keras model's "
    "output vectors",
    "label_mae": "numeric heads: mean absolute error against the labels (reference_label_mae: "
    "the Keras model's)",
    "latency_ms.b1 / b32": "p50 and p90 of one call at batch 1 / 32, milliseconds, and the "
    "number of timed calls",
    "speedup.b1 / b32": "p50 latency of the same runtime's fp32 artifact divided by this one's "
    "(same rounds)",
    "sparsity": "fraction of zeros among the artifact's weights (constant tensors of rank >= 2)",
    "weights.tensors[]": "per weight tensor, counted in the file: shape, dtype, sparsity, "
    "distinct values, most distinct values in one channel",
    "repeatable": "the artifact gives a sample the same output before and after other samples ran",
    "left_float": "op types whose weights stayed float32 (e.g. LSTM under onnxruntime static int8)",
    "warnings": "compressed artifacts bigger than, or slower at batch 1 than, their runtime's fp32 "
    "artifact, each with the fastest alternative recipe measured (verification.warnings)",
    "recipe": "how the artifact was made: id and description (a row of its backend's recipe "
    "table), knobs, and what every candidate measured when it was chosen by measurement",
    "recipe.selection": "the search's objective, agreement floor, and winner after each timing "
    "round (it stops when the winner is the same 3 rounds running)",
    "recipe.fallback": "when the drift estimated on held-back training samples exceeded max_drift: "
    "the layers kept float, the drift before and after, each step",
    "layer_errors": "per layer of a quantized artifact, SQNR (dB) of its output against the same "
    "tensor in the runtime's fp32 artifact on 16 training samples, worst first (or why it could "
    "not be measured)",
}


def fields_table() -> list[str]:
    """FIELDS as a markdown table (report.md and the README)."""
    return ["| field | meaning |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in FIELDS.items()]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def environment() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
    }


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    artifacts = report["verification"]["artifacts"]
    multi = bool(artifacts) and len(artifacts[0]["heads"]) > 1
    numeric = any(m.get("task") == "regress" for a in artifacts for m in a["heads"].values())
    header = ["artifact", "runtime"] + (["head"] if multi else []) + [
        "size (B)", "gzip (B)", "ratio", "acc %", "drift pts", "agree %", "max|diff|",
    ] + (["rel err"] if numeric else []) + [
        "p50 b1 ms", "p50 b32 ms", "speedup b1", "speedup b32",
    ]  # fmt: skip
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
                    _fmt(m.get("accuracy"), ".2f"),
                    _fmt(m.get("drift"), "+.2f"),
                    _fmt(m.get("agreement"), ".2f"),
                    f"{m['max_abs_diff']:.4f}",
                ]
                + ([_fmt(m.get("relative_error"), ".4f")] if numeric else [])
                + [
                    _fmt((lat.get("b1") or {}).get("p50_ms"), ".3f") if first else "",
                    _fmt((lat.get("b32") or {}).get("p50_ms"), ".3f") if first else "",
                    _fmt(spd.get("b1"), ".2f") + ("x" if spd.get("b1") else "") if first else "",
                    _fmt(spd.get("b32"), ".2f") + ("x" if spd.get("b32") else "") if first else "",
                ]
            )
    return header, rows


def render_table(report: dict[str, Any]) -> str:
    header, rows = table_rows(report)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in
                       enumerate(zip(header, widths, strict=True)))]  # fmt: skip
    for r in rows:
        cells = enumerate(zip(r, widths, strict=True))
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in cells))
    v = report["verification"]
    lines.append(
        f"{report['model']}: {v['test_samples']} held-out samples, {v['threads']} thread(s), "
        f"CPU {report['environment']['cpu']}"
    )
    if v.get("baseline_accuracy"):
        base = ", ".join(f"{h} {acc:.2f}%" for h, acc in v["baseline_accuracy"].items())
        lines.append(f"baseline (float model before prune/cluster): {base}")
    for a in v["artifacts"] if v.get("baseline_accuracy") else []:  # after prune/cluster
        if a.get("sparsity"):
            lines.append(f"{a['name']}: weight sparsity {a['sparsity']:.3f}")
    lines += notes(report)
    return "\n".join(lines)


def recipe_note(name: str, recipe: dict[str, Any]) -> str | None:
    """One line on a recipe chosen by measurement: the winner and what the others measured."""
    candidates = recipe.get("candidates") or []
    chosen = next((c for c in candidates if c.get("chosen")), None)
    if chosen is None:
        return None
    others = ", ".join(
        f"{c['id']} {c['speedup_b1']:.2f}x"
        if "speedup_b1" in c
        else f"{c['id']} skipped: {_short(c.get('error') or 'not measured')}"
        for c in candidates
        if c is not chosen
    )
    return (
        f"{name}: recipe {chosen['id']} chosen: {chosen['speedup_b1']:.2f}x vs fp32 at batch 1, "
        f"{chosen['agreement']:.1f}% agreement on training samples (others: {others})"
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
                f"{fallback['max_drift']:g} on {fallback['samples']} training samples; kept float: "
                f"{kept}; drift after: {fallback['drift_after']:.2f} pts"
                + (f" ({fallback['note']})" if fallback.get("note") else "")
            )
        worst = sensitivity.summary((a.get("layer_errors") or {}).get("layers"))
        if worst:
            out.append(f"layers {a['name']}: worst SQNR vs fp32 (dB, higher is better): {worst}")
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
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )


def render_junit(reports: list[dict[str, Any]], errors: dict[str, str]) -> str:
    """JUnit XML for CI: a suite per model, a case per artifact x gate (x head for drift)."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="compress")
    for rep in reports:
        v = rep["verification"]
        suite = ET.SubElement(root, "testsuite", name=rep["model"])
        cases = 0
        for a in v["artifacts"]:
            if a["runtime"] == "keras":
                continue
            max_error = v.get("max_error", DEFAULT_MAX_ERROR)
            checks = []
            for head, m in a["heads"].items():
                gate = "max_error" if m.get("task") == "regress" else "max_drift"
                why = head_gate(m, v["max_drift"], max_error)
                checks.append((f"{gate}[{head}]", why is None, why or ""))
            if v["min_speedup"] is not None and a["precision"] != "fp32":
                why = speedup_gate(a, v["min_speedup"])
                checks.append(("min_speedup", why is None, why or ""))
            if "repeatable" in a:
                checks.append(("repeatable", a["repeatable"], "outputs depend on earlier calls"))
            for gate, ok, message in checks:
                case = ET.SubElement(
                    suite, "testcase", classname=f"{rep['model']}.{a['name']}", name=gate
                )
                cases += 1
                if not ok:
                    ET.SubElement(case, "failure", message=f"{a['name']}: {message}")
        for s in rep["skipped"]:
            case = ET.SubElement(suite, "testcase", classname=f"{rep['model']}.{s['name']}",
                                 name="export")  # fmt: skip
            ET.SubElement(case, "skipped", message=s["reason"])
            cases += 1
        suite.set("tests", str(cases))
        suite.set("failures", str(len(v["failures"])))
    for model, message in errors.items():
        suite = ET.SubElement(root, "testsuite", name=model, tests="1", errors="1")
        case = ET.SubElement(suite, "testcase", classname=model, name="pipeline")
        ET.SubElement(case, "error", message=message)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


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
