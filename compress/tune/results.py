"""A tune's results: the Pareto front per runtime, the recommended trial per runtime and
objective, and the tune directory's outputs (tune.json, pareto.csv, pareto.png, tune.html,
best/)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

from compress.tune.space import DEFAULT_SPACE, METRIC, encode_value, runtimes
from compress.tune.trial import TuneSetup, budget_excess


def pareto(points: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The points no other point beats on every key (all minimized)."""
    front = []
    for p in points:
        dominated = any(
            all(q[k] <= p[k] for k in keys) and any(q[k] < p[k] for k in keys)
            for q in points
            if q is not p
        )
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: tuple(p[k] for k in keys))


def quality(trials: list[dict[str, Any]], setup: TuneSetup) -> dict[str, Any]:
    """What a trial's accuracy cost is read as (its fronts' last axis, the report's y axis): a
    language model's perplexity increase (percent, budget max_ppl_increase), else the drift
    (points, budget max_drift)."""
    for t in trials:
        for m in (t.get("runtimes") or {}).values():
            if (m or {}).get("ppl_increase") is not None:
                return {"key": "ppl_increase", "label": "perplexity increase vs the float "
                        "model (%)", "unit": "%", "budget": m["max_ppl_increase"]}  # fmt: skip
    return {"key": "drift", "label": "drift vs the float model (pts)", "unit": "pts",
            "budget": setup.max_drift}  # fmt: skip


def fronts(trials: list[dict[str, Any]], setup: TuneSetup) -> dict[str, list[dict[str, Any]]]:
    """Per runtime, the Pareto front of the feasible trials over (objectives..., quality)."""
    cost = quality(trials, setup)["key"]
    out = {}
    for runtime in runtimes():
        points = []
        for t in trials:
            m = (t.get("runtimes") or {}).get(runtime) or {}
            if t["state"] != "COMPLETE" or not m.get("feasible") or "same_as" in t:
                continue
            if any(m.get(METRIC[o]) is None for o in setup.objectives):
                continue
            points.append({"trial": t["number"], "params": t["params"], **m})
        out[runtime] = pareto(points, tuple(METRIC[o] for o in setup.objectives) + (cost,))
    return out


def best(trials: list[dict[str, Any]], setup: TuneSetup) -> dict[str, dict[str, Any]]:
    """Per runtime and objective, the recommended trial: the best feasible one, or (when none
    meets the budget) the one closest to it, marked `within_budget: false`."""
    cost = quality(trials, setup)["key"]
    out = {}
    done = [t for t in trials if t["state"] == "COMPLETE" and "same_as" not in t]
    for runtime in runtimes():
        for objective in setup.objectives:
            rows = [
                (t, t["runtimes"][runtime])
                for t in done
                if t["runtimes"].get(runtime, {}).get(METRIC[objective]) is not None
            ]
            feasible = [(t, m) for t, m in rows if m["feasible"]]
            if feasible:
                t, m = min(feasible, key=lambda tm: (tm[1][METRIC[objective]], tm[1][cost]))
                within = True
            elif rows:
                t, m = min(rows, key=lambda tm: (budget_excess(tm[1], setup.max_drift),
                                                 tm[1][METRIC[objective]]))  # fmt: skip
                within = False
            else:
                continue
            out[f"{runtime}-{objective}"] = {
                "trial": t["number"],
                "params": t["params"],
                "within_budget": within,
                **m,
            }
    return out


def write_outputs(setup: TuneSetup, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """tune.json, pareto.csv, pareto.png and best/ (each recommended trial's run directory)."""
    from compress.core.fileio import write_json_atomic, write_text_atomic
    from compress.report.tune import tune_page

    fp32 = _fp32_reference(trials)
    record = {
        "tune_id": setup.tune_id,
        "target": setup.target,
        "objectives": list(setup.objectives),
        "max_drift": setup.max_drift,
        "quality": quality(trials, setup),
        "space": {k: [encode_value(v) for v in vs] for k, vs in setup.space.items()},
        "runtimes": list(runtimes()),
        "latency": "every latency was measured with no other trial running: trials hold a "
        "shared lock while they run and time only while holding it exclusively (TimingLock.trial, "
        "TimingLock.exclusive)",
        "fp32_weight_bytes": fp32,
        "trials": trials,
        "fronts": fronts(trials, setup),
        "best": best(trials, setup),
    }
    record["passed"] = bool(record["best"]) and all(
        b["within_budget"] for b in record["best"].values()
    )
    best_dir = setup.directory / "best"
    shutil.rmtree(best_dir, ignore_errors=True)
    for name, b in record["best"].items():
        source = Path(next(t["run_dir"] for t in trials if t["number"] == b["trial"]))
        if source.is_dir():
            shutil.copytree(source, best_dir / name)
            b["run_dir"] = str(best_dir / name)
    write_json_atomic(setup.directory / "tune.json", record)
    write_text_atomic(setup.directory / "pareto.csv", pareto_csv(record))
    plot(record, setup.directory / "pareto.png")
    write_text_atomic(setup.directory / "tune.html", tune_page(record))
    return record


def _fp32_reference(trials: list[dict[str, Any]]) -> int | None:
    """The float model's fp32 weight bytes (what compression ratios are measured against)."""
    for t in trials:
        if t.get("run_dir") and Path(t["run_dir"], "report.json").is_file():
            report = json.loads(Path(t["run_dir"], "report.json").read_text())
            return report["verification"].get("float_weight_bytes")
    return None


def pareto_csv(record: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "runtime",
            "trial",
            "prune",
            "cluster",
            "quantize",
            "qat",
            "artifact",
            "recipe",
            "size_bytes",
            "size_gzip_bytes",
            "latency_ms_b1",
            "drift",
        ]
    )
    for runtime, front in record["fronts"].items():
        for p in front:
            writer.writerow(
                [
                    runtime,
                    p["trial"],
                    *(p["params"].get(k) for k in DEFAULT_SPACE),
                    p["artifact"],
                    p["recipe"],
                    p["size_bytes"],
                    p["size_gzip_bytes"],
                    p["latency_ms_b1"],
                    f"{p['drift']:.3f}",
                ]
            )
    return buf.getvalue()


def plot(record: dict[str, Any], path: Path) -> None:
    """pareto.png, written atomically."""
    import matplotlib.pyplot as plt

    from compress.core.fileio import write_atomic
    from compress.report.tune import pareto_figure

    fig = pareto_figure(record)

    def save(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=90)

    write_atomic(path, save)
    plt.close(fig)
