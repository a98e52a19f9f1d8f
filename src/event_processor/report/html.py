"""HTML pieces of the report: one self-contained fragment per scenario, and a full page.

The fragment goes into pytest-html through ``pytest_html.extras.html(fragment)``, which
inserts it as-is into the report's table; so it uses inline styles only (no <style>,
no scripts, no external files) and embeds its figures as data URIs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from event_processor.metrics.slo import METRICS, format_value
from event_processor.metrics.stats import LatencySummary
from event_processor.report.plots import png_data_uri
from event_processor.report.schema import (
    CapacitySection,
    Configuration,
    HarnessCost,
    RaceResult,
    ResultDocument,
    ScenarioResult,
    SloEntry,
    SweepSection,
)
from event_processor.report.verdict import failed_first, failed_gates, verdict_lines

PASS_STYLE = "background:#d4edda;color:#155724;font-weight:bold"
FAIL_STYLE = "background:#f8d7da;color:#721c24;font-weight:bold"
_TABLE = "border-collapse:collapse;margin:0.4em 0 1em 0;font-size:0.9em"
_CELL = "border:1px solid #ccc;padding:2px 8px;text-align:right"
_HEAD = "border:1px solid #ccc;padding:2px 8px;background:#f0f0f0;text-align:left"
_LATENCY_FIELDS = (("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("p999", "p99.9"))


def _verdict(passed: bool) -> str:
    style = PASS_STYLE if passed else FAIL_STYLE
    return f'<td style="{_CELL};{style}">{"PASSED" if passed else "FAILED"}</td>'


def _row(cells: Iterable[str], header: bool = False) -> str:
    tag, style = ("th", _HEAD) if header else ("td", _CELL)
    return "<tr>" + "".join(f'<{tag} style="{style}">{c}</{tag}>' for c in cells) + "</tr>"


def _table(header: Sequence[str], rows: Iterable[str], caption: str = "") -> str:
    cap = f'<caption style="text-align:left;font-weight:bold">{escape(caption)}</caption>'
    return (
        f'<table style="{_TABLE}">{cap if caption else ""}'
        + _row((escape(h) for h in header), header=True)
        + "".join(rows)
        + "</table>"
    )


def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def _slo_row(label: str, measured: str, entry: SloEntry | None) -> str:
    if entry is None:
        return _row([escape(label), measured, "", ""])
    target = f"{entry.comparison} {entry.target:g} {entry.unit}".strip()
    cells = [escape(label), measured, escape(target)]
    return (
        "<tr>"
        + "".join(f'<td style="{_CELL}">{c}</td>' for c in cells)
        + _verdict(entry.passed)
        + "</tr>"
    )


def _figures_rows(r: ScenarioResult) -> list[str]:
    """One row per figure, with its SLO target and verdict where it has one."""
    e2e = r.e2e_ms
    rows = [
        _slo_row(f"end-to-end {label}", _ms(getattr(e2e, key)), r.slo.get(key))
        for key, label in (*_LATENCY_FIELDS, ("max", "max"))
    ]
    rows.append(_slo_row("end-to-end mean", _ms(e2e.mean), None))
    rows.append(
        _slo_row("throughput", f"{r.throughput_eps:.1f} row changes/s", r.slo.get("throughput"))
    )
    if r.business_events_per_s is not None:
        rows.append(_slo_row("business events", f"{r.business_events_per_s:.1f} /s", None))
    success = "n/a" if r.success_rate is None else format_value(r.success_rate * 100, "%")
    rows.append(_slo_row("success", success, r.slo.get("success")))
    rows.append(_slo_row("dead-lettered", f"{r.dead_lettered} events", None))
    integrity = r.slo.get("integrity")
    if integrity is not None:
        shown = "n/a" if integrity.measured is None else format_value(integrity.measured, "%")
        rows.append(_slo_row("integrity", shown, integrity))
    if r.harness_cost is not None:
        rows.append(_row(["harness cost", escape(harness_cost_text(r.harness_cost)), "", ""]))
    if r.cost:
        rows.append(_row(["CPU cost", escape(cost_text(r.cost)), "", ""]))
    if r.validity:
        rows.append(_row(["load", escape(validity_text(r.validity)), "", ""]))
    known = {*METRICS}
    for name, entry in r.slo.items():  # anything else gated (future metrics) still shows
        if name not in known:
            rows.append(_slo_row(name, escape(str(entry.measured)), entry))
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


def validity_text(validity: dict[str, Any]) -> str:
    """Offered as planned or INVALID, and whether the host was saturated."""
    offered = validity.get("offered_rate")
    words = (
        f"offered at {offered:.0f}/s of {validity.get('planned_rate'):g}/s planned"
        if offered is not None and validity.get("planned_rate")
        else "offered rate unknown"
    )
    if not validity.get("valid", True):
        words = "INVALID: load not offered as planned: " + "; ".join(validity.get("reasons", []))
    if validity.get("saturated"):
        words += f"; host saturated ({validity.get('host_busy_pct')} % busy)"
    return words


def cost_text(cost: dict[str, Any]) -> str:
    """One line: CPU per row change of the whole box and of each process group."""
    groups = cost.get("groups", {})
    parts = ", ".join(f"{name} {g['cpu_s_per_1000_row_changes']:.3f}" for name, g in groups.items())
    return (
        f"{cost.get('cpu_s_per_1000_row_changes', 0):.3f} CPU s per 1,000 row changes "
        f"({parts}); host {cost.get('host_busy_pct', 0):.0f} % busy, "
        f"steal {cost.get('host_steal_pct', 0):.1f} %, over {cost.get('window_s', 0):.1f} s"
        + cost_extras_text(cost)
    )


def cost_extras_text(cost: dict[str, Any]) -> str:
    """What else took the CPU: processes outside the pipeline and the JVMs' compilers."""
    text = ""
    outside = cost.get("outside_pipeline")
    if outside:
        top = ", ".join(f"{name} {cpu:.2f} s" for name, cpu in outside.get("top", {}).items())
        text += (f"; outside the pipeline {outside.get('share_of_a_core_pct', 0):.0f} % of a "
                 f"core" + (f" ({top})" if top else ""))  # fmt: skip
    if cost.get("jvm_jit_cpu_s") is not None:
        text += f"; JVM JIT compilers {cost['jvm_jit_cpu_s']:.2f} s"
    return text


def harness_cost_text(cost: HarnessCost) -> str:
    """One line: what measuring cost the consumer and the harness."""
    text = (
        f"timing records {_pct(cost.instrumentation_pct)} of consumer batch time; "
        f"collector {_pct(cost.collector_pct)} of consumer CPU"
    )
    return text + (" (live dashboard on)" if cost.dashboard else "")


def _bool(value: bool) -> str:
    return "yes" if value else "<b>no</b>"


def sweep_section(sweep: SweepSection) -> str:
    """The sweep's table (one row per run) and its plot (medians per setting)."""
    from event_processor.report.plots import sweep_plot

    rows = [
        _row(
            [
                escape(p.label),
                str(p.run),
                _ms(p.p50_ms),
                _ms(p.p95_ms),
                _ms(p.p99_ms),
                f"{p.throughput_eps:.1f}",
                "n/a" if p.success_rate is None else f"{p.success_rate * 100:.2f} %",
                _bool(p.delivered and p.integrity_ok),
                _bool(p.slo_passed),
                _pct(p.harness_cost_pct),
            ]
        )
        for p in sweep.points
    ]
    head = ("setting", "run", "p50", "p95", "p99", "row changes/s", "success", "integrity",
            "SLOs met", "harness cost")  # fmt: skip
    facts = (
        f"{sweep.scenario}: {sweep.events} events at {sweep.rate:g}/s per run, "
        f"{sweep.repeat} run(s) per setting, {sweep.mode} of "
        + ", ".join(f"{k}={','.join(map(str, v))}" for k, v in sweep.knobs.items())
        + "; original values (restored): "
        + (", ".join(f"{k}={v}" for k, v in sweep.original.items()) or "-")
    )
    parts = [
        '<div class="ep-sweep" id="sweep" style="font-family:sans-serif;margin:0.5em 0">',
        "<h2>Sweep</h2>",
        f"<p>{escape(facts)}</p>",
    ]
    if sweep.interrupted:
        parts.append(f'<p style="{FAIL_STYLE}">Stopped early: {escape(sweep.interrupted)}</p>')
    parts.append(_table(head, rows, "Runs per setting"))
    medians = _sweep_medians(sweep)
    if medians:
        parts.append(_images({"Sweep: p50/p99 (median of runs) and throughput per setting":
                              sweep_plot(medians)}))  # fmt: skip
    parts.append("</div>")
    return "".join(parts)


def _sweep_medians(sweep: SweepSection) -> list[tuple[str, float, float, float]]:
    from statistics import median

    by_label: dict[str, list[Any]] = {}
    for p in sweep.points:
        by_label.setdefault(p.label, []).append(p)
    return [
        (
            label,
            median(p.p50_ms for p in ps),
            median(p.p99_ms for p in ps),
            median(p.throughput_eps for p in ps),
        )
        for label, ps in by_label.items()
    ]


def capacity_section(cap: CapacitySection) -> str:
    """The capacity search's steps and its latency-against-rate curve."""
    from event_processor.report.plots import latency_vs_rate

    rows = [
        _row(
            [
                f"{s.rate:g}",
                f"{s.row_rate:.0f}",
                _ms(s.p50_ms),
                _ms(s.p99_ms),
                f"{s.applied_rate:.0f}",
                f"{s.sent_rate:.0f}",
                f"{s.backlog_mid:.0f} → {s.backlog_end:.0f}",
                f"{s.backlog_growth:.0f}",
                "good" if s.good else "<b>bad</b>: " + escape("; ".join(s.reasons)),
            ]
        )
        for s in cap.steps
    ]
    head = ("offered events/s", "offered rows/s", "p50", "p99", "applied events/s",
            "sent events/s", "backlog rows (Q2 → Q4)", "backlog growth rows/s",
            "verdict")  # fmt: skip
    found = (
        f"Highest sustained rate: {cap.capacity_rate:g} business events/s "
        f"(~{cap.capacity_row_rate:.0f} row changes/s) at p99 <= {cap.p99_slo_ms:g} ms; "
        f"{cap.limited_by}. Steps of {cap.duration_s:g} s, search from {cap.start:g} "
        f"to at most {cap.maximum:g} events/s."
    )
    criteria = ", ".join(f"{k} {v:g}" for k, v in cap.criteria.items())
    points = [(s.rate, s.p50_ms, s.p99_ms, s.applied_rate) for s in cap.steps]
    parts = [
        '<div class="ep-capacity" id="capacity" style="font-family:sans-serif;margin:0.5em 0">',
        "<h2>Capacity</h2>",
        f"<p>{escape(found)}</p>",
        f"<p>Criteria: {escape(criteria)}.</p>",
    ]
    if cap.interrupted:
        parts.append(f'<p style="{FAIL_STYLE}">Stopped early: {escape(cap.interrupted)}</p>')
    parts.append(_table(head, rows, "Steps (in search order)"))
    if points:
        figure = latency_vs_rate(points, title="Latency vs offered rate (business events/s)",
                                 slos={"p99": cap.p99_slo_ms})  # fmt: skip
        parts.append(_images({"Capacity: p50/p99 and applied rate vs offered rate": figure}))
    parts.append("</div>")
    return "".join(parts)


def _baseline_rows(r: ScenarioResult) -> list[str]:
    return [
        "<tr>"
        + f'<td style="{_CELL};text-align:left">{escape(e.message)}</td>'
        + _verdict(e.passed)
        + "</tr>"
        for e in r.baseline.values()
    ]


def _summary_rows(items: Mapping[str, LatencySummary]) -> list[str]:
    return [
        _row(
            [escape(name), str(s.count)]
            + [_ms(getattr(s, key)) for key, _ in _LATENCY_FIELDS]
            + [_ms(s.max)]
        )
        for name, s in items.items()
    ]


_SUMMARY_HEAD = ("", "count", "p50", "p95", "p99", "p99.9", "max")


def _images(plots: Mapping[str, bytes]) -> str:
    return "".join(
        f'<figure style="display:inline-block;margin:0 1em 1em 0">'
        f'<img alt="{escape(caption)}" src="{png_data_uri(png)}" style="max-width:700px">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
        for caption, png in plots.items()
    )


def configuration_table(config: Configuration) -> str:
    """Versions, knobs and host facts: what produced the figures."""
    rows = [
        _row(["command", f"<code>{escape(config.command)}</code>" if config.command else "-"]),
        _row(["host", escape(config.machine())]),
        _row(["python", escape(config.python)]),
        _row(["platform", escape(config.platform)]),
    ]
    rows += [_row([f"version: {escape(k)}", escape(v)]) for k, v in config.versions.items()]
    rows += [_row([f"knob: {escape(k)}", escape(str(v))]) for k, v in config.knobs.items()]
    rows += [_row([f"endpoint: {escape(k)}", escape(v)]) for k, v in config.endpoints.items()]
    extra: dict[str, Any] = config.model_extra or {}
    rows += [_row([escape(k), _value_html(v)]) for k, v in extra.items()]
    return _table(("setting", "value"), rows, "Configuration")


def _value_html(value: Any) -> str:
    """A configuration value: nested mappings as "key: value" lines, not a Python dict."""
    if isinstance(value, Mapping):
        return "<br>".join(
            f"<b>{escape(str(k))}</b>: {_value_html(v)}" if isinstance(v, Mapping)
            else f"{escape(str(k))}: {escape(str(v))}"
            for k, v in value.items()
        )  # fmt: skip
    return escape(str(value))


def _headline(r: ScenarioResult) -> str:
    style = PASS_STYLE if r.passed else FAIL_STYLE
    verdict = "PASSED" if r.passed else "FAILED"
    facts = [f"{r.events} business events"]
    if r.rate is not None:
        offered = (r.validity or {}).get("offered_rate")
        if offered is not None:
            facts.append(f"planned at {r.rate:g}/s, offered at {offered:g}/s")
        else:
            facts.append(f"planned at {r.rate:g}/s")
    business = (
        ""
        if r.business_events_per_s is None
        else (f"{r.business_events_per_s:.1f} business events/s = ")
    )
    facts.append(
        f"applied {business}{r.throughput_eps:.1f} row changes/s over {r.duration_s:.1f} s"
    )
    if r.seed is not None:
        facts.append(f"seed {r.seed}")
    if r.warmup_events:
        facts.append(f"first {r.warmup_events} dropped as warm-up")
    committed = "?" if r.committed is None else str(r.committed)
    facts.append(f"{committed} row changes committed, {r.applied} applied")
    if r.duplicates:
        facts.append(f"{r.duplicates} redelivered")
    facts.append(f"{r.dead_lettered} dead-lettered")
    return (
        f'<h3 style="margin:0.3em 0">Scenario {escape(r.name)} '
        f'<span style="{style};padding:0 6px">{verdict}</span></h3>'
        f'<p style="margin:0.2em 0 0.6em 0">{escape(", ".join(facts))}</p>'
    )


def scenario_fragment(
    result: ScenarioResult | Mapping[str, Any],
    plots: Mapping[str, bytes] | None = None,
    configuration: Configuration | None = None,
) -> str:
    """Self-contained HTML for one scenario: figures vs SLOs, stages, kinds, plots."""
    r = result if isinstance(result, ScenarioResult) else ScenarioResult.model_validate(result)
    parts = [
        f'<div class="ep-scenario" id="scenario-{escape(r.name)}" '
        'style="font-family:sans-serif;margin:0.5em 0">',
        _headline(r),
        _table(("figure", "measured", "SLO", "result"), _figures_rows(r), "Figures vs SLOs"),
    ]
    if r.integrity_breakdown:
        parts.append(integrity_section(r.integrity_breakdown))
    if r.baseline:
        parts.append(_table(("check", "result"), _baseline_rows(r), "Against the baseline"))
    stages = {name.replace("_", " "): s for name, s in r.stages_ms.items()}
    parts.append(_table(_SUMMARY_HEAD, _summary_rows(stages), "Latency by stage"))
    if r.by_kind:
        parts.append(_table(_SUMMARY_HEAD, _summary_rows(r.by_kind), "Latency by event kind"))
    if r.by_table_op:
        parts.append(_table(_SUMMARY_HEAD, _summary_rows(r.by_table_op), "By table and op"))
    generator = {
        "schedule lag": r.schedule_lag_ms,
        "commit time": r.commit_ms,
        "e2e from intended send": r.e2e_from_intended_ms,
    }
    parts.append(_table(_SUMMARY_HEAD, _summary_rows(generator), "Generator (open loop)"))
    if plots:
        parts.append(_images(plots))
    if configuration is not None:
        parts.append(configuration_table(configuration))
    parts.append("</div>")
    return "".join(parts)


def integrity_section(breakdown: Mapping[str, Any]) -> str:
    """What the verifier found: per table missing / extra / mismatched, first examples."""
    keys = ("table", "collection", "postgres_rows", "mongo_rows", "missing", "extra", "mismatched")
    head = ("table", "collection", "PostgreSQL rows", "in MongoDB", "missing", "extra",
            "mismatched")  # fmt: skip
    rows = [_row([escape(str(t.get(k, ""))) for k in keys]) for t in breakdown.get("tables", [])]
    drained = breakdown.get("drained", True)
    why = "" if drained else f" (the pipeline did not drain: {breakdown.get('drain_detail', '')})"
    parts = [
        f'<p style="{FAIL_STYLE}">{escape("The integrity verifier found differences" + why)}.</p>'
    ]
    if rows:
        parts.append(_table(head, rows, "What the verifier found"))
    examples = breakdown.get("examples") or []
    if examples:
        items = "".join(f"<li><code>{escape(e)}</code></li>" for e in examples)
        parts.append(f"<p>First findings:</p><ul>{items}</ul>")
    return "".join(parts)


def race_fragment(
    race: RaceResult | Mapping[str, Any], plots: Mapping[str, bytes] | None = None
) -> str:
    """Every sink of a race side by side (median and spread over repeats), the ratios
    ours/theirs, the percentile curves, each leg, and each sink's configuration."""
    from event_processor.race.result import SUMMARY_HEAD, integrity_text, summary_rows

    r = race if isinstance(race, RaceResult) else RaceResult.model_validate(race)
    verdict = "ours complete and exact" if r.passed else "ours NOT complete and exact"
    style = PASS_STYLE if r.passed else FAIL_STYLE
    rows = [_row(escape(c) for c in cells) for cells in summary_rows(r)]
    facts = [
        f"{r.repeats} repeat(s) of each sink alone: {r.events} rows at {r.rate:g}/s into "
        f"{r.table} (one per transaction), and draining a backlog of {r.backlog_rows} rows of "
        f"{r.backlog_table}",
        f"change topic {r.topic}",
        f"visibility probe: {r.probe}, every {r.poll_interval_ms:g} ms",
        f"schedule lag p99 {r.schedule_lag_ms.p99:.1f} ms",
    ]
    leg_head = ("leg", "sink", "visible", "p50", "p99", "max", "drain rows/s",
                "CPU s/1000 rows", "integrity")  # fmt: skip
    leg_rows = []
    for leg in r.legs:
        for side in leg.sides.values():
            lat = side.latency_ms
            leg_rows.append(_row([
                f"{escape(leg.mode)} #{leg.repeat}", escape(side.label),
                f"{side.visible}/{leg.events}",
                _ms(lat.p50), _ms(lat.p99), _ms(lat.max),
                "-" if side.drain_rows_per_s is None else f"{side.drain_rows_per_s:.1f}",
                "-" if side.cpu_s_per_1000_rows is None else f"{side.cpu_s_per_1000_rows:.3f}",
                escape(integrity_text(side.integrity)) if side.integrity else "-",
            ]))  # fmt: skip
    configs = "".join(
        f"<h4 style=\"margin:0.6em 0 0.2em 0\">{escape(s.label)}</h4>"
        f'<p style="margin:0.1em 0">{escape(s.why)}. CPU: {escape(s.process)}.</p>'
        + _table(("option", "value"),
                 (_row([escape(k), escape(v)]) for k, v in sorted(s.config.items())))
        for s in r.sinks.values()
    )  # fmt: skip
    notes = "".join(f"<li>{escape(n)}</li>" for n in r.notes)
    return (
        '<div class="ep-race" id="race" style="font-family:sans-serif;margin:0.5em 0">'
        f'<h3 style="margin:0.3em 0">Race: our consumer against the sinks a data team '
        f'would pick <span style="{style};padding:0 6px">{verdict}</span></h3>'
        f'<p style="margin:0.2em 0 0.6em 0">{escape("; ".join(facts))}</p>'
        + _table(SUMMARY_HEAD, rows, "Median (min-max) over the repeats; ratios ours/theirs")
        + (_images(plots) if plots else "")
        + _table(leg_head, leg_rows, "Every leg, in the order it ran")
        + configs
        + (f"<ul>{notes}</ul>" if notes else "")
        + "</div>"
    )


def first_screen(doc: ResultDocument) -> str:
    """What a reader needs first: each failed gate with its size, the failed scenarios'
    largest stage and whether their load was offered as planned (report.verdict)."""
    lines = verdict_lines(doc)
    if not lines:
        return ""
    failed = set(failed_gates(doc))
    items = "".join(
        f'<li style="{FAIL_STYLE if line in failed else ""}">{escape(line)}</li>' for line in lines
    )
    title = "Why it failed" if not doc.passed else "Verdict"
    return f'<div id="verdict"><h2 style="margin:0.4em 0">{title}</h2><ul>{items}</ul></div>'


def _overview(doc: ResultDocument) -> str:
    rows = [
        "<tr>"
        + "".join(
            f'<td style="{_CELL}">{c}</td>'
            for c in (
                f'<a href="#scenario-{escape(r.name)}">{escape(r.name)}</a>',
                str(r.events),
                _ms(r.e2e_ms.p50),
                _ms(r.e2e_ms.p99),
                f"{r.throughput_eps:.1f}",
                str(r.dead_lettered),
            )
        )
        + _verdict(r.passed)
        + "</tr>"
        for r in failed_first(doc)
    ]
    head = ("scenario", "events", "e2e p50", "e2e p99", "row changes/s", "dead-lettered", "result")
    return _table(head, rows, "Scenarios")


def render_standalone(
    doc: ResultDocument, plots: Mapping[str, Mapping[str, bytes]] | None = None
) -> str:
    """A complete HTML page for a result document; ``plots`` maps scenario -> figures."""
    plots = plots or {}
    verdict = "PASSED" if doc.passed else "FAILED"
    style = PASS_STYLE if doc.passed else FAIL_STYLE
    commit = escape(doc.commit or "unknown")
    body = [
        f'<h1>event-processor results <span style="{style};padding:0 8px">{verdict}</span></h1>',
        f"<p>Generated {escape(doc.generated_at)} at commit <code>{commit}</code>.</p>",
        first_screen(doc),
    ]
    if doc.sweep is not None or doc.capacity is not None:
        body.append(
            "<p>Each run below is gated against its SLOs as any run is: a setting or rate "
            "that misses one is a finding of the search, not a failure of it.</p>"
        )
    if doc.sweep is not None:
        body.append(sweep_section(doc.sweep))
    if doc.capacity is not None:
        body.append(capacity_section(doc.capacity))
    body += [
        _overview(doc) if doc.scenarios else "",
        *(scenario_fragment(r, plots.get(r.name)) for r in failed_first(doc)),
        race_fragment(doc.race, plots.get("race")) if doc.race is not None else "",
        configuration_table(doc.configuration),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>event-processor results {escape(doc.generated_at)}</title></head>"
        '<body style="font-family:sans-serif;margin:1.5em">' + "\n".join(body) + "</body></html>\n"
    )
