"""compress diff BASE NEW: two runs compared per runtime and head, for CI.

Per runtime two rows are compared: the fp32 artifact, and the shipped one (the compressed
artifact; the fp32 one when the run built none), so a run that stopped quantizing shows as the
size jump it is. Latency is compared only when both runs were timed on the same CPU model, core
count and thread count; otherwise the comparison says so and the latency gate is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.core.errors import InputError
from compress.measure.gates import shipped_row

FIELDS = ("size_bytes", "size_gzip_bytes")


def load(path: str | Path) -> dict[str, Any]:
    """A run's report: a run directory or its report.json."""
    path = Path(path)
    source = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"'{path}' has no report.json: expected a run directory (OUT/MODEL/RUN_ID) or its "
            "report.json"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"'{source}' is not a readable report.json: {exc}") from None
    if not isinstance(report, dict) or "artifacts" not in (report.get("verification") or {}):
        raise InputError(f"'{source}' is not a compress report (no verification.artifacts)")
    report["_source"] = str(source)
    return report


def _rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """runtime/role -> the artifact: `RUNTIME fp32` and `RUNTIME shipped` (gates.shipped_row),
    runtimes in the order the report lists them."""
    out: dict[str, dict[str, Any]] = {}
    artifacts = report["verification"]["artifacts"]
    for runtime in dict.fromkeys(a["runtime"] for a in artifacts):
        fp32 = next((a for a in artifacts if a["runtime"] == runtime and a["precision"] == "fp32"),
                    None)  # fmt: skip
        shipped = shipped_row(artifacts, runtime)
        if runtime == "keras":
            out["keras"] = fp32 or shipped
            continue
        if fp32 is not None:
            out[f"{runtime} fp32"] = fp32
        if shipped is not None:
            out[f"{runtime} shipped"] = shipped
    return out


def _timing_setup(report: dict[str, Any]) -> tuple[Any, ...]:
    env = report.get("environment") or {}
    return (env.get("cpu"), env.get("cpu_count"), report["verification"].get("threads"))


def _pct(base: float | None, new: float | None) -> float | None:
    if base is None or new is None or not base:
        return None
    return (new - base) / base * 100.0


def compare(
    base: dict[str, Any],
    new: dict[str, Any],
    *,
    max_size_increase: float | None = None,
    max_latency_increase: float | None = None,
    max_accuracy_drop: float | None = None,
    max_ppl_increase: float | None = None,
) -> dict[str, Any]:
    """The comparison record: per row the two artifacts' values and deltas, and the
    regressions past the given gates (None: not gated). A language model's head adds its
    held-out perplexity (percent change, gated by max_ppl_increase) and bits per token; its
    generation speed (ms per new token) is judged with latency."""
    b_rows, n_rows = _rows(base), _rows(new)
    same_timing = _timing_setup(base) == _timing_setup(new)
    rows, regressions, notes = [], [], []
    if not same_timing:
        notes.append(
            "latency not compared: BASE was timed on {} ({} cores, {} threads), NEW on {} "
            "({} cores, {} threads)".format(*_timing_setup(base), *_timing_setup(new))
        )
    for key in list(dict.fromkeys([*b_rows, *n_rows])):
        b, n = b_rows.get(key), n_rows.get(key)
        if b is None or n is None:
            side = "NEW" if b is None else "BASE"
            rows.append({"row": key, "only_in": side, "artifact": (n or b)["name"]})
            if n is None:
                regressions.append(f"{key}: {b['name']} is missing from NEW")
            continue
        row: dict[str, Any] = {
            "row": key,
            "artifact": {"base": b["name"], "new": n["name"]},
            "recipe": {"base": b["recipe"]["id"], "new": n["recipe"]["id"]},
        }
        for field in FIELDS:
            row[field] = {"base": b[field], "new": n[field], "pct": _pct(b[field], n[field])}
        pct = row["size_gzip_bytes"]["pct"]
        if max_size_increase is not None and pct is not None and pct > max_size_increase:
            regressions.append(
                f"{key}: gzip size +{pct:.1f}% ({b['size_gzip_bytes']:,} -> "
                f"{n['size_gzip_bytes']:,} B, {b['name']} -> {n['name']}) exceeds "
                f"max_size_increase {max_size_increase:g}%"
            )
        row["latency_ms"] = {}
        for batch in ("b1", "b32"):
            bl = ((b.get("latency_ms") or {}).get(batch) or {}).get("p50_ms")
            nl = ((n.get("latency_ms") or {}).get(batch) or {}).get("p50_ms")
            if bl is None and nl is None:
                continue
            lat = {"base": bl, "new": nl, "pct": _pct(bl, nl) if same_timing else None}
            row["latency_ms"][batch] = lat
            if (
                same_timing
                and max_latency_increase is not None
                and lat["pct"] is not None
                and lat["pct"] > max_latency_increase
            ):
                regressions.append(
                    f"{key}: p50 latency at batch {batch[1:]} +{lat['pct']:.1f}% "
                    f"({bl:.4f} -> {nl:.4f} ms) exceeds max_latency_increase "
                    f"{max_latency_increase:g}%"
                )
        gen = _generation(b, n, same_timing)
        if gen is not None:
            row["generation"] = gen
            if (
                max_latency_increase is not None
                and gen["ms_per_token"]["pct"] is not None
                and gen["ms_per_token"]["pct"] > max_latency_increase
            ):
                ms = gen["ms_per_token"]
                regressions.append(
                    f"{key}: generation +{ms['pct']:.1f}% ms per token ({ms['base']:.4f} -> "
                    f"{ms['new']:.4f} ms, {gen['tokens_per_s']['base']:,.0f} -> "
                    f"{gen['tokens_per_s']['new']:,.0f} tokens/s) exceeds max_latency_increase "
                    f"{max_latency_increase:g}%"
                )
        row["heads"] = {}
        for head, bm in b.get("heads", {}).items():
            nm = n.get("heads", {}).get(head)
            if nm is None:
                regressions.append(f"{key}: head {head} is missing from NEW")
                continue
            h: dict[str, Any] = {"task": bm.get("task", "classify")}
            for field in ("accuracy", "drift", "agreement", "relative_error", "mean_abs_error"):
                if field in bm or field in nm:
                    bv, nv = bm.get(field), nm.get(field)
                    h[field] = {
                        "base": bv,
                        "new": nv,
                        "delta": None if bv is None or nv is None else nv - bv,
                    }
            for field in ("perplexity", "bits_per_token"):
                if field in bm or field in nm:
                    bv, nv = bm.get(field), nm.get(field)
                    h[field] = {"base": bv, "new": nv, "pct": _pct(bv, nv)}
            row["heads"][head] = h
            ppl = h.get("perplexity")
            if (
                max_ppl_increase is not None
                and ppl
                and ppl["pct"] is not None
                and ppl["pct"] > max_ppl_increase
            ):
                regressions.append(
                    f"{key}: head {head} perplexity {ppl['base']:.4g} -> {ppl['new']:.4g} "
                    f"(+{ppl['pct']:.2f}%) exceeds max_ppl_increase {max_ppl_increase:g}%"
                )
            acc = h.get("accuracy")
            if (
                max_accuracy_drop is not None
                and acc
                and acc["delta"] is not None
                and -acc["delta"] > max_accuracy_drop
            ):
                regressions.append(
                    f"{key}: head {head} accuracy {acc['base']:.2f}% -> {acc['new']:.2f}% "
                    f"({acc['delta']:+.2f} pts) exceeds max_accuracy_drop {max_accuracy_drop:g} pts"
                )
        rows.append(row)
    return {
        "base": base.get("_source"),
        "new": new.get("_source"),
        "timing_comparable": same_timing,
        "gates": {
            "max_size_increase": max_size_increase,
            "max_latency_increase": max_latency_increase,
            "max_accuracy_drop": max_accuracy_drop,
            "max_ppl_increase": max_ppl_increase,
        },
        "rows": rows,
        "notes": notes,
        "regressions": regressions,
    }


def _generation(b: dict[str, Any], n: dict[str, Any], same_timing: bool) -> dict[str, Any] | None:
    """A language model's greedy generation speed in both runs (None: neither measured it);
    percent changes only when both were timed on the same setup."""
    bg, ng = b.get("generation") or {}, n.get("generation") or {}
    if not bg and not ng:
        return None
    out: dict[str, Any] = {}
    for field in ("ms_per_token", "tokens_per_s", "prefill_ms"):
        bv, nv = bg.get(field), ng.get(field)
        out[field] = {"base": bv, "new": nv, "pct": _pct(bv, nv) if same_timing else None}
    return out
