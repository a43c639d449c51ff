"""The gates a run's artifacts must pass, judged on their report rows: accuracy drift per head (a
numeric head's relative error, a language model's perplexity increase), repeatability, and (when
asked) the batch-1 speedup of a quantized artifact over its runtime's fp32 artifact. One place,
so the report, the exit code and the JUnit XML agree."""

from __future__ import annotations

from typing import Any

DEFAULT_MAX_DRIFT = 1.0  # points of accuracy an artifact may lose against the float model
DEFAULT_MAX_ERROR = 0.05  # relative error a numeric head may have against the float model
DEFAULT_MAX_PPL_INCREASE = 1.0  # percent a language model's held-out perplexity may rise
TIMING_NOISE = 1.05  # latencies within 5% are one speed (one measurement's noise on a busy CPU)
SMALLER = 0.95  # "smaller than fp32" means at least 5% smaller: 0.04% less is the same file
# artifacts that exist to store integer weights
INTEGER_PRECISIONS = ("int8", "int4", "dynamic", "qat")
REPEATABLE = "outputs depend on earlier calls (state kept between invokes)"


def row_checks(
    row: dict[str, Any],
    max_drift: float,
    max_error: float = DEFAULT_MAX_ERROR,
    min_speedup: float | None = None,
    drift: str = "drift",
    max_ppl_increase: float = DEFAULT_MAX_PPL_INCREASE,
    ppl: str = "ppl_increase",
) -> list[tuple[str, str | None]]:
    """Every gate of one artifact's report row, as (gate, why it fails or None): repeatability,
    each head's accuracy (`max_drift[HEAD]` for a classifier, `max_error[HEAD]` for a numeric
    head, `max_ppl_increase[HEAD]` for a language model's next-token head) and, when asked and
    the artifact is compressed, the batch-1 speedup. `drift` names the field a classifier's
    drift is read from (`baseline_drift`: against the float model before prune/cluster, where
    the row has it; `ppl` likewise for a language model's perplexity increase). The report's
    failures, the JUnit cases and the tune's feasibility are all
    this list."""
    checks: list[tuple[str, str | None]] = []
    if "repeatable" in row:
        checks.append(("repeatable", None if row["repeatable"] else REPEATABLE))
    for head, m in row["heads"].items():
        gate = GATE_OF_TASK[m.get("task", "classify")]
        why = head_gate(m, max_drift, max_error, drift, max_ppl_increase, ppl)
        checks.append((f"{gate}[{head}]", why))
    if min_speedup is not None and row["precision"] != "fp32":
        checks.append(("min_speedup", speedup_gate(row, min_speedup)))
    return checks


GATE_OF_TASK = {"classify": "max_drift", "regress": "max_error", "lm": "max_ppl_increase"}


def gate_failures(
    rows: list[dict[str, Any]],
    max_drift: float,
    min_speedup: float | None,
    max_error: float = DEFAULT_MAX_ERROR,
    max_ppl_increase: float = DEFAULT_MAX_PPL_INCREASE,
) -> list[str]:
    """One message per artifact x head x gate that failed."""
    failures = []
    for r in rows:
        if r["runtime"] == "keras":
            continue
        checks = row_checks(r, max_drift, max_error, min_speedup,
                            max_ppl_increase=max_ppl_increase)  # fmt: skip
        for gate, why in checks:
            if why is not None:
                head = gate.partition("[")[2].rstrip("]")
                failures.append(f"{r['name']} ({head}): {why}" if head else f"{r['name']}: {why}")
    return failures


def head_gate(
    m: dict[str, Any],
    max_drift: float,
    max_error: float,
    drift: str = "drift",
    max_ppl_increase: float = DEFAULT_MAX_PPL_INCREASE,
    ppl: str = "ppl_increase",
) -> str | None:
    """Why one head of an artifact fails its accuracy gate, or None: a classifier's drift (read
    from the field named by `drift`, the head's own `drift` where it lacks that field) against
    max_drift, a numeric head's relative error against max_error, a language model's held-out
    perplexity increase over the float model's (percent) against max_ppl_increase."""
    if m.get("task") == "lm":
        increase = m.get(ppl, m["ppl_increase"])
        if increase > max_ppl_increase:
            whose = ("the float model's before prune/cluster" if ppl in m and ppl != "ppl_increase"
                     else f"the float model's {m['reference_perplexity']:.4g}")  # fmt: skip
            return (f"perplexity {m['perplexity']:.4g} is {increase:.2f}% above {whose}, over "
                    f"max_ppl_increase {max_ppl_increase:g}%")  # fmt: skip
        return None
    if m.get("task", "classify") == "regress":
        if m["relative_error"] > max_error:
            return (f"relative error {m['relative_error']:.4f} vs the float model exceeds "
                    f"max_error {max_error:g}")  # fmt: skip
        return None
    value = m.get(drift, m["drift"])
    if value > max_drift:
        return f"accuracy drift {value:.2f} pts exceeds max_drift {max_drift:g}"
    return None


def shipped_row(rows: list[dict[str, Any]], runtime: str) -> dict[str, Any] | None:
    """The artifact a runtime ships: its compressed file, or its fp32 one when the run built
    none (None: the runtime has no artifact)."""
    mine = [r for r in rows if r["runtime"] == runtime]
    compressed = next((r for r in mine if r["precision"] != "fp32"), None)
    return compressed or next((r for r in mine if r["precision"] == "fp32"), None)


def compression_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """Compressed artifacts that do not pay: bigger than, or slower at batch 1 than, the fp32
    artifact of the same runtime, each with the best alternative its recipe search measured.
    Shown loudly whatever the gates say (gate speed with `min_speedup`)."""
    fp32 = {r["runtime"]: r for r in rows if r["precision"] == "fp32" and r["runtime"] != "keras"}
    out = []
    for r in rows:
        base = fp32.get(r["runtime"])
        if base is None or r is base or r["runtime"] == "keras":
            continue
        problems = []
        if r["size_bytes"] > base["size_bytes"] * SMALLER:
            problems.append(f"is not smaller than {base['name']} by {(1 - SMALLER) * 100:.0f}% "
                            f"({r['size_bytes']:,} B vs {base['size_bytes']:,} B)")  # fmt: skip
        tensors = (r.get("weights") or {}).get("tensors") or []
        integer = {"int8", "uint8", "int4", "uint4"}
        if (
            r["precision"] in INTEGER_PRECISIONS
            and tensors
            and not any(t["dtype"] in integer for t in tensors)
        ):
            problems.append(
                "holds no integer weights (its quantizer left every weight tensor float; "
                "dynamic-range quantizers skip tensors under 1024 values)"
            )
        under = _under_floor(r)
        if under:
            problems.append(under)
        speedup = (r.get("speedup") or {}).get("b1")
        if speedup is not None and speedup * TIMING_NOISE < 1.0:
            problems.append(f"is slower than {base['name']} at batch 1 ({speedup:.2f}x, beyond "
                            f"the {(TIMING_NOISE - 1) * 100:.0f}% timing noise)")  # fmt: skip
        if problems:
            out.append(f"{r['name']} {' and '.join(problems)}; {_alternative(r, base)}; the fp32 "
                       f"file ({base['name']}) is the one to ship in {r['runtime']}")  # fmt: skip
        unsure = _contradicted(r)
        if unsure:
            out.append(unsure)
    return out


def _under_floor(row: dict[str, Any]) -> str | None:
    """The recipe search found no candidate within its accuracy floor and kept the closest
    (`below_floor` on the chosen candidate, written by the search): said, since it is not a
    choice that passed."""
    candidates = (row.get("recipe") or {}).get("candidates", [])
    chosen = next((c for c in candidates if c.get("chosen") and c.get("below_floor")), None)
    if chosen is None:
        return None
    return (
        f"was chosen below its search's accuracy floor (no recipe candidate reached it; "
        f"{chosen['id']} came closest: {chosen['below_floor']})"
    )


def _contradicted(row: dict[str, Any]) -> str | None:
    """The recipe search and verify, in the same run, disagree on whether the chosen file is
    faster than fp32 at batch 1 (one says faster beyond the noise, the other slower beyond it):
    the choice is unsure on this machine, said rather than shipped as a win."""
    chosen = next((c for c in (row.get("recipe") or {}).get("candidates", [])
                   if c.get("chosen") and "speedup_b1" in c), None)  # fmt: skip
    verified = (row.get("speedup") or {}).get("b1")
    if chosen is None or verified is None:
        return None
    searched = chosen["speedup_b1"]
    faster, slower = searched >= TIMING_NOISE, verified * TIMING_NOISE < 1.0
    if not (faster and slower) and not (searched * TIMING_NOISE < 1.0 and verified >= TIMING_NOISE):
        return None
    return (
        f"{row['name']}: unsure timing: the recipe search measured {chosen['id']} at "
        f"{searched:.2f}x fp32 and verify at {verified:.2f}x in the same run; compare them "
        "again with `compress bench RUN_DIR` before relying on either"
    )


def _alternative(row: dict[str, Any], base: dict[str, Any]) -> str:
    """The fastest other recipe the search measured for this artifact, with its size."""
    recipe = row.get("recipe") or {}
    measured = [c for c in recipe.get("candidates", [])
                if not c.get("chosen") and "speedup_b1" in c]  # fmt: skip
    if not measured:
        return "no alternative recipe was measured (--quantize auto compares them all)"
    others = [c for c in measured if c.get("eligible", True)]
    if not others:
        floor = (recipe.get("selection") or {}).get("min_agreement")
        return (
            "no other recipe measured passes the accuracy floor"
            + (f" ({floor:g}% agreement)" if floor is not None else "")
            + ": "
            + "; ".join(f"{c['id']}: {c['lost']}" for c in measured if "lost" in c)
        )
    best = max(others, key=lambda c: c["speedup_b1"])
    size = best["size_bytes"] / base["size_bytes"]
    return (f"fastest alternative measured: {best['id']} {best['speedup_b1']:.2f}x "
            f"at {size:.2f}x the fp32 size")  # fmt: skip


def speedup_gate(row: dict[str, Any], min_speedup: float) -> str | None:
    """Why a quantized artifact fails `min_speedup` at batch 1, or None if it passes. A speedup
    that was not measured fails: the gate cannot show that the artifact pays."""
    speedup = (row.get("speedup") or {}).get("b1")
    if speedup is None:
        return f"speedup at batch 1 was not measured, so min_speedup {min_speedup:g} is not met"
    if speedup < min_speedup:
        return f"speedup {speedup:.2f}x at batch 1 is below min_speedup {min_speedup:g}"
    return None
