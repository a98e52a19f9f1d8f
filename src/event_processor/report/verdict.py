"""Why a run failed, in a few lines: the first thing the HTML page, the terminal summary
and a red CI log show.

Each failed gate says its size ("stress e2e p99 1299.6 ms > 200 ms (6.5×)"), each
failed scenario names the stage with the largest share of its end-to-end p50, and
each says whether its load was offered as planned and how busy the host was.
"""

from __future__ import annotations

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
        for line in (largest_stage(r), validity_line(r)):
            if line:
                lines.append(line)
    if not failed:
        lines += [line for r in doc.scenarios if (line := validity_line(r))]
    return lines


def failed_first(doc: ResultDocument) -> list[ScenarioResult]:
    """The scenarios, failed ones first (stable within each group)."""
    return sorted(doc.scenarios, key=lambda r: r.passed)
