"""The first screen of a report: failed gates with their size, the largest stage, validity.

Inputs are real result documents written by `event-processor load --scenario stress`
(stress right after `stack up`, which failed its latency gates; moderate, which passed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from event_processor.cli import main
from event_processor.report.html import render_standalone
from event_processor.report.schema import ResultDocument, SloEntry, load_json
from event_processor.report.verdict import (
    failed_first,
    failed_gates,
    gate_miss,
    largest_stage,
    validity_line,
    verdict_lines,
)

pytestmark = pytest.mark.unit

REPORTS = Path(__file__).parents[1] / "fixtures" / "reports"
FAILED = REPORTS / "stress-failed-result.json"
PASSED = REPORTS / "moderate-passed-result.json"


def _mixed() -> ResultDocument:
    """A page with a passing scenario first and a failing one after it."""
    good = load_json(PASSED)
    bad = load_json(FAILED).scenarios[0]
    return good.model_copy(update={"scenarios": [*good.scenarios, bad]})


def test_each_failed_gate_says_by_how_much() -> None:
    doc = load_json(FAILED)
    slo = doc.scenarios[0].slo
    expected = [
        f"stress e2e {name} {slo[name].measured:.1f} ms > {slo[name].target:g} ms "
        f"({slo[name].measured / slo[name].target:.2g}×)"
        if slo[name].measured / slo[name].target < 10
        else f"stress e2e {name} {slo[name].measured:.1f} ms > {slo[name].target:g} ms "
        f"({slo[name].measured / slo[name].target:.0f}×)"
        for name in ("p50", "p95", "p99")
    ]
    assert failed_gates(doc) == expected
    assert expected[-1] == "stress e2e p99 1299.6 ms > 200 ms (6.5×)"


@pytest.mark.parametrize(
    ("comparison", "measured", "target", "unit", "line"),
    [
        (
            ">",
            80.0,
            100.0,
            "row changes/s",
            "s throughput 80.0 row changes/s < 100 row changes/s (0.8×)",
        ),
        (">=", 93.1, 100.0, "%", "s throughput 93.1 % < 100 % (0.93×)"),
        ("<", 30.0, 30.0, "ms", "s throughput 30.0 ms = 30 ms (1×)"),
    ],
)
def test_a_miss_in_either_direction(
    comparison: str, measured: float, target: float, unit: str, line: str
) -> None:
    entry = SloEntry(target=target, measured=measured, passed=False, comparison=comparison,
                     unit=unit)  # fmt: skip
    assert gate_miss("s", "throughput", entry) == line


def test_the_largest_stage_is_named_with_its_share_of_the_mean() -> None:
    r = load_json(FAILED).scenarios[0]
    name = max(r.stages_ms, key=lambda n: r.stages_ms[n].mean)
    share = 100 * r.stages_ms[name].mean / r.e2e_ms.mean
    line = largest_stage(r)
    assert line is not None
    assert line.startswith(f"stress: largest stage {name.replace('_', ' ')}, {share:.0f} % of")
    # The stages' means add up to the end-to-end mean (the shares are of a whole).
    total = sum(s.mean for s in r.stages_ms.values())
    assert total == pytest.approx(r.e2e_ms.mean, rel=0.02)


def test_validity_says_offered_rate_and_host_load() -> None:
    r = load_json(FAILED).scenarios[0]
    line = validity_line(r)
    assert line == (
        f"stress: load offered as planned (500.0/s of 500.0/s); host "
        f"{r.validity['host_busy_pct']:.0f} % busy (saturated); "
        f"{r.cost['cpu_s_per_1000_row_changes']:.2f} CPU ms per row change"
    )


def test_the_page_opens_with_why_it_failed_and_the_failed_scenario_first() -> None:
    doc = _mixed()
    assert [r.name for r in doc.scenarios] == ["moderate", "stress"]
    assert [r.name for r in failed_first(doc)] == ["stress", "moderate"]
    page = render_standalone(doc)
    why = page.index("Why it failed")
    first_gate = page.index("stress e2e p50 1072.0 ms &gt; 30 ms")
    failed_section = page.index('id="scenario-stress"')
    passed_section = page.index('id="scenario-moderate"')
    assert why < first_gate < failed_section < passed_section
    for line in verdict_lines(doc):
        assert line.replace(">", "&gt;") in page


def test_a_passing_page_has_no_failure_block() -> None:
    page = render_standalone(load_json(PASSED))
    assert "Why it failed" not in page
    assert "load offered as planned" in page


def test_report_command_ends_with_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--json", str(FAILED)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("stress: load offered as planned")
    assert "stress e2e p99 1299.6 ms > 200 ms (6.5×)" in out
    assert out.index("why it failed") < out.index("stress e2e p99 1299.6 ms > 200 ms")


def test_headline_says_planned_offered_and_achieved_rates_and_the_host() -> None:
    doc = load_json(FAILED)
    r = doc.scenarios[0]
    page = render_standalone(doc)
    v = r.validity or {}
    assert f"planned at {r.rate:g}/s, offered at {v['offered_rate']:g}/s" in page
    assert (
        f"applied {r.business_events_per_s:.1f} business events/s = "
        f"{r.throughput_eps:.1f} row changes/s over {r.duration_s:.1f} s"
    ) in page


def test_configuration_records_the_machine_and_the_command() -> None:
    import sys

    from event_processor.report.html import configuration_table
    from event_processor.report.schema import base_configuration

    config = base_configuration()
    assert config.memory_gib and config.memory_gib > 0
    assert config.command.split()[0] == Path(sys.argv[0]).name
    table = configuration_table(config)
    assert f"{config.host_cpus} CPUs" in table
    if config.cpu_model:
        assert config.cpu_model in table


def test_with_a_baseline_the_stage_that_grew_most_is_named() -> None:
    from event_processor.report.verdict import stage_growth, stage_p50_pairs

    runs = sorted((load_json(p) for p in (REPORTS / "history").glob("result-*.json")),
                  key=lambda d: d.generated_at)  # fmt: skip
    before, now = runs[0].scenarios[0], runs[1].scenarios[0]
    pairs = stage_p50_pairs(now.model_dump()["stages_ms"], before.model_dump())
    assert pairs == {n: [now.stages_ms[n].p50, before.stages_ms[n].p50] for n in now.stages_ms}
    grown = max(pairs, key=lambda n: pairs[n][0] - pairs[n][1])
    r = now.model_copy(update={"stage_p50_vs_baseline_ms": pairs})
    line = stage_growth(r)
    assert line is not None
    assert line.startswith(
        f"extreme: stage grown most against the baseline: {grown.replace('_', ' ')} p50"
    )
    assert stage_p50_pairs(now.model_dump()["stages_ms"], None) is None


def test_a_multi_scenario_page_keeps_each_runs_own_rate_and_shows_no_python_dict() -> None:
    from event_processor.perf.results import document
    from event_processor.report.html import configuration_table

    docs = [load_json(REPORTS / "moderate-passed-result.json"), load_json(FAILED)]
    results = [d.scenarios[0] for d in docs]
    configs = [d.configuration for d in docs]
    rates = [c.knobs["generator_rate"] for c in configs]
    assert rates[0] != rates[1]
    doc = document(results, configs)
    assert "generator_rate" not in doc.configuration.knobs
    runs = (doc.configuration.model_extra or {})["runs"]
    assert [runs[r.name]["knobs"]["generator_rate"] for r in results] == rates
    table = configuration_table(doc.configuration)
    assert "{'" not in table and "&#x27;" not in table
    assert f"generator_rate: {rates[1]}" in table


def test_the_percentile_axis_reaches_p99_with_few_samples() -> None:
    import numpy as np

    from event_processor.report.plots import percentile_points

    x, y = percentile_points(np.arange(1.0, 11.0))  # 10 samples, as the warmup scenario
    assert x[-1] == 100.0  # 1 / (1 - 0.99)
    assert y[-1] == 10.0  # p99 of 10 samples is the maximum (nearest rank)


def test_an_integrity_failure_is_broken_down_on_the_first_screen() -> None:
    import json

    from event_processor.report.verdict import integrity_breakdown, integrity_line

    # A real verifier report: documents changed and removed by hand (tests/integrity).
    data = json.loads((REPORTS / "verify-tampered.json").read_text())
    breakdown = integrity_breakdown(data)
    assert breakdown is not None
    bad = [t for t in data["tables"] if not t["ok"]]
    assert [t["table"] for t in breakdown["tables"]] == [t["table"] for t in bad]
    r = (
        load_json(FAILED)
        .scenarios[0]
        .model_copy(update={"integrity_breakdown": breakdown, "passed": False})
    )
    line = integrity_line(r)
    assert line is not None and line.startswith("stress: integrity: ")
    for t in bad:
        assert f"{t['table']} " in line
    assert line.endswith(f"first: {data['findings'][0]['line']}")
    doc = load_json(FAILED).model_copy(update={"scenarios": [r]})
    assert line in verdict_lines(doc)
    page = render_standalone(doc)
    assert page.index("Why it failed") < page.index("What the verifier found")
