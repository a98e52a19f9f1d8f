"""Why a run failed, in a few lines: the first thing the HTML page, the terminal summary
and a red CI log show.

Each failed gate says its size ("stress e2e p99 1299.6 ms > 200 ms (6.5×)"), each
failed scenario names the stage with the largest share of its end-to-end p50, and
each says whether its load was offered as planned and how busy the host was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from event_processor.metrics.slo import format_value
from event_processor.report.schema import ResultDocument, ScenarioResult, SloEntry

# How a gate's metric is named in a verdict line (the SLO names are terse).
_METRIC_WORDS = {
    "p50": "e2e p50",
    "p95": "e2e p95",
    "p99": "e2e p99",
    "p999": "e2e p99.9",
    "max": "e2e max",
    "intended_p50": "e2e p50 from intended send",
    "intended_p95": "e2e p95 from intended send",
    "intended_p99": "e2e p99 from intended send",
}


def gate_miss(scenario: str, name: str, entry: SloEntry) -> str:
    """One failed gate with its size, e.g. "stress e2e p99 1299.6 ms > 200 ms (6.5×)"."""
    what = f"{scenario} {_METRIC_WORDS.get(name, name)}"
    target = f"{entry.target:g} {entry.unit}".strip()
    if entry.measured is None:
        return f"{what}: not measured (target {entry.comparison} {target})"
    measured = format_value(entry.measured, entry.unit)
    if entry.measured == entry.target:
        relation = "="
    else:
        relation = ">" if entry.measured > entry.target else "<"
    size = ""
    if entry.target and entry.measured:
        ratio = entry.measured / entry.target
        size = f" ({ratio:.2g}×)" if ratio < 10 else f" ({ratio:.0f}×)"
    return f"{what} {measured} {relation} {target}{size}"


def failed_gates(doc: ResultDocument) -> list[str]:
    """Every failed gate of the document, failed scenarios in their order."""
    return [
        gate_miss(r.name, name, entry)
        for r in doc.scenarios
        for name, entry in r.slo.items()
        if not entry.passed
    ] + [
        f"{r.name} {entry.message}"
        for r in doc.scenarios
        for entry in r.baseline.values()
        if not entry.passed
    ]


def largest_stage(r: ScenarioResult) -> str | None:
    """The stage with the largest share of the end-to-end time. Shares are of the
    mean: a row change's stages add up to its end-to-end time, so the stages' means
    add up to the end-to-end mean (their percentiles do not)."""
    stages = {name: s.mean for name, s in r.stages_ms.items() if s.count}
    total = r.e2e_ms.mean if r.e2e_ms.count else sum(stages.values())
    if not stages or total <= 0:
        return None
    name, mean = max(stages.items(), key=lambda kv: kv[1])
    p50 = r.stages_ms[name].p50
    return (
        f"{r.name}: largest stage {name.replace('_', ' ')}, {100 * mean / total:.0f} % of "
        f"the end-to-end mean (mean {mean:.1f} ms, p50 {p50:.1f} ms)"
    )


def stage_growth(r: ScenarioResult) -> str | None:
    """With a baseline: the stage whose p50 grew the most (in ms) against it."""
    pairs = r.stage_p50_vs_baseline_ms or {}
    if not pairs:
        return None
    name, (now, before) = max(pairs.items(), key=lambda kv: kv[1][0] - kv[1][1])
    return (
        f"{r.name}: stage grown most against the baseline: {name.replace('_', ' ')} p50 "
        f"{before:.1f} -> {now:.1f} ms ({now - before:+.1f} ms)"
    )


def stage_p50_pairs(
    stages_now: Mapping[str, Any], baseline: Mapping[str, Any] | None
) -> dict[str, list[float]] | None:
    """[p50 now, p50 in the baseline] per stage both runs have (None without a baseline)."""
    before = (baseline or {}).get("stages_ms") or {}
    pairs = {
        name: [float(stages_now[name]["p50"]), float(b["p50"])]
        for name, b in before.items()
        if name in stages_now and b.get("count")
    }
    return pairs or None


# How many of the verifier's findings a report quotes.
EXAMPLES = 5


def integrity_breakdown(verify: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """From the verifier's JSON report: did the pipeline drain, which tables differ and
    how (missing, extra, mismatched), and the first findings as examples."""
    if not verify:
        return None
    keys = ("table", "collection", "postgres_rows", "mongo_rows", "missing", "extra", "mismatched")
    tables = [
        {k: t.get(k) for k in keys} for t in verify.get("tables", []) if not t.get("ok", True)
    ]
    drain = verify.get("drain") or {}
    return {
        "drained": bool(drain.get("drained", True)),
        "drain_detail": drain.get("detail", ""),
        "tables": tables,
        "counts": dict(verify.get("finding_counts") or {}),
        "examples": [f.get("line", "") for f in (verify.get("findings") or [])[:EXAMPLES]],
    }


def integrity_line(r: ScenarioResult) -> str | None:
    """One line of what the verifier found, e.g. "stress: integrity: orders 3 missing,
    1 mismatched; first: orders/42: field total: ..."."""
    b = r.integrity_breakdown
    if not b:
        return None
    parts = []
    if not b.get("drained", True):
        parts.append(f"the pipeline did not drain ({b.get('drain_detail') or 'timeout'})")
    for t in b.get("tables", []):
        what = ", ".join(f"{t[k]} {k}" for k in ("missing", "extra", "mismatched") if t.get(k))
        parts.append(f"{t['table']} {what or 'counts differ'} "
                     f"({t['postgres_rows']} rows, {t['mongo_rows']} in MongoDB)")  # fmt: skip
    words = "; ".join(parts) or "differences found"
    examples = b.get("examples") or []
    if examples:
        words += f"; first: {examples[0]}"
    return f"{r.name}: integrity: {words}"


def validity_line(r: ScenarioResult) -> str | None:
    """Was the load offered as planned, how busy was the host (from the cost section)."""
    v = r.validity or {}
    if not v:
        return None
    if v.get("valid", False):
        words = f"load offered as planned ({v.get('offered_rate')}/s of {v.get('planned_rate')}/s)"
    else:
        words = "INVALID: " + "; ".join(v.get("reasons", []) or ["load not offered as planned"])
    cost = r.cost or {}
    if v.get("host_busy_pct") is not None:
        words += f"; host {v['host_busy_pct']:.0f} % busy"
        if v.get("saturated"):
            words += " (saturated)"
    if cost.get("cpu_s_per_1000_row_changes"):
        words += f"; {cost['cpu_s_per_1000_row_changes']:.2f} CPU ms per row change"
    return f"{r.name}: {words}"


def verdict_lines(doc: ResultDocument) -> list[str]:
    """The first screen as text: failed gates, then per failed scenario its largest
    stage and its validity (every scenario's validity when all passed)."""
    lines = failed_gates(doc)
    failed = [r for r in doc.scenarios if not r.passed]
    for r in failed:
        cause = stage_growth(r) or largest_stage(r)
        for line in (integrity_line(r), cause, validity_line(r)):
            if line:
                lines.append(line)
    if not failed:
        lines += [line for r in doc.scenarios if (line := validity_line(r))]
    return lines


def failed_first(doc: ResultDocument) -> list[ScenarioResult]:
    """The scenarios, failed ones first (stable within each group)."""
    return sorted(doc.scenarios, key=lambda r: r.passed)
