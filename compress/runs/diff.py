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
    """runtime/role -> the artifact: `RUNTIME fp32` and `RUNTIME shipped`."""
    out: dict[str, dict[str, Any]] = {}
    by_runtime: dict[str, list[dict[str, Any]]] = {}
    for a in report["verification"]["artifacts"]:
        by_runtime.setdefault(a["runtime"], []).append(a)
    for runtime, arts in by_runtime.items():
        fp32 = next((a for a in arts if a["precision"] == "fp32"), None)
        shipped = next((a for a in arts if a["precision"] != "fp32"), None) or fp32
        if runtime == "keras":
            out["keras"] = fp32 or arts[0]
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
) -> dict[str, Any]:
    """The comparison record: per row the two artifacts' values and deltas, and the
    regressions past the given gates (None: not gated)."""
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
            row["heads"][head] = h
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
        },
        "rows": rows,
        "notes": notes,
        "regressions": regressions,
    }


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def render(result: dict[str, Any]) -> str:
    """The comparison as a terminal table, then notes and regressions."""
    header = ["row", "artifact (base -> new)", "recipe", "gzip B", "Δgzip", "Δsize", "Δp50 b1",
              "Δp50 b32", "heads (Δ acc pts / Δ rel err)"]  # fmt: skip
    lines_: list[list[str]] = [header]
    for r in result["rows"]:
        if "only_in" in r:
            lines_.append([r["row"], f"{r['artifact']} only in {r['only_in']}", *["-"] * 7])
            continue
        heads = []
        for name, h in r["heads"].items():
            if "accuracy" in h and h["accuracy"]["delta"] is not None:
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
            ", ".join(heads) or "-",
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in lines_) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
           for row in lines_]  # fmt: skip
    out += [f"note: {n}" for n in result["notes"]]
    out += [f"REGRESSION: {r}" for r in result["regressions"]]
    if not result["regressions"]:
        gated = [k for k, v in result["gates"].items() if v is not None]
        out.append("no regression" + (f" ({', '.join(gated)} checked)" if gated else
                                       " (no gate given: deltas only)"))  # fmt: skip
    return "\n".join(out)
