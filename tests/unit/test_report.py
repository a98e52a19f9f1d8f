"""The JSON result document, the plots and the HTML pieces."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from event_processor.metrics.slo import compare_to_baseline, evaluate
from event_processor.metrics.stats import RunStats, summarize_run
from event_processor.metrics.timing import SendRecord, TimingRecord
from event_processor.report.html import render_standalone, scenario_fragment
from event_processor.report.plots import (
    PNG_SIGNATURE,
    latency_histogram,
    latency_vs_rate,
    percentile_curve,
    png_data_uri,
    scenario_plots,
    stage_breakdown,
    stage_shares,
)
from event_processor.report.schema import (
    ResultDocument,
    ScenarioResult,
    base_configuration,
    build_document,
    load_json,
    parse_document,
    scenario_result,
    to_json,
    write_json,
)

pytestmark = pytest.mark.unit

BASE = 1_700_000_000_000_000
SLOS = {
    "p50": 30.0,
    "p95": 100.0,
    "p99": 200.0,
    "throughput": 100.0,
    "success": 99.9,
    "integrity": 100.0,
}


def run(n: int = 200, slow_every: int = 0) -> RunStats:
    """n one-row transactions 5 ms apart; every slow_every-th takes 250 ms to process."""
    timings, sends = [], []
    for i in range(n):
        t0 = BASE + i * 5000
        processing = 250_000 if slow_every and i % slow_every == 0 else 2000 + (i % 7) * 1000
        kind = "order_placed" if i % 2 else "customer_signup"
        sends.append(SendRecord(i, kind, i, t0 - 900, t0 - 800, t0 - 10, 1))
        t1, t2 = t0 + 3000 + (i % 5) * 500, t0 + 4000 + (i % 5) * 500
        t3 = t2 + 1000
        timings.append(
            TimingRecord("orders", "c", str(i), i, i, t0, t1, t2, t3, t3 + 100, t3 + processing)
        )
    return summarize_run(timings, sends, committed_rows=n)


def result(name: str = "stress", slow_every: int = 0) -> ScenarioResult:
    stats = run(slow_every=slow_every)
    gates = evaluate(stats, SLOS, scenario=name, integrity_pct=100.0)
    return scenario_result(name, stats, gates, rate=200.0, seed=7, warmup_events=0)


def document() -> ResultDocument:
    config = base_configuration(
        versions={"kafka": "4.3.0", "debezium": "3.6.1.Final"},
        knobs={"poll.interval.ms": 10, "linger.ms": 0},
        scenario_file="scenarios.toml",
    )
    return build_document(
        [result("moderate"), result("stress", slow_every=10)],
        config,
        commit="0123abcd",
        generated_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


# --- JSON document -------------------------------------------------------------------


def test_document_shape() -> None:
    data = json.loads(to_json(document()))
    assert set(data) >= {"generated_at", "commit", "configuration", "scenarios"}
    assert data["generated_at"] == "2025-01-02T03:04:05Z"
    assert data["configuration"]["host_cpus"] >= 1
    assert data["configuration"]["knobs"]["poll.interval.ms"] == 10
    assert data["configuration"]["versions"]["kafka"] == "4.3.0"
    assert data["configuration"]["scenario_file"] == "scenarios.toml"
    entry = data["scenarios"][0]
    for key in ("name", "events", "committed", "applied", "throughput_eps", "success_rate"):
        assert key in entry
    assert set(entry["e2e_ms"]) == {"count", "min", "mean", "p50", "p95", "p99", "p999", "max"}
    assert set(entry["stages_ms"]) == {"capture", "kafka", "consumer_lag", "processing"}
    assert set(entry["by_kind"]) == {"customer_signup", "order_placed"}
    assert entry["slo"]["p99"] == {
        "target": 200.0,
        "measured": entry["e2e_ms"]["p99"],
        "passed": True,
        "comparison": "<",
        "kind": "latency",
        "unit": "ms",
        "message": entry["slo"]["p99"]["message"],
    }
    assert entry["slo"]["integrity"]["kind"] == "integrity"


def test_scenario_passes_only_when_every_gate_passes() -> None:
    doc = document()
    moderate, stress = doc.scenarios
    assert moderate.passed
    # every 10th event takes 250 ms: p95 (rank 190 of 200) is 250+ ms
    assert not stress.passed
    assert not stress.slo["p95"].passed and stress.slo["p50"].passed
    assert not doc.passed


def test_baseline_gates_fail_the_scenario() -> None:
    stats = run()
    worse = {**stats.to_dict(), "e2e_ms": {**stats.to_dict()["e2e_ms"], "p95": 1.0}}
    regress = compare_to_baseline(stats.to_dict(), worse, {"p95": 10.0})
    entry = scenario_result("s", stats, evaluate(stats, SLOS), baseline_gates=regress)
    assert all(e.passed for e in entry.slo.values())
    assert not entry.passed and not entry.baseline["p95"].passed


def test_json_round_trip(tmp_path: Path) -> None:
    doc = document()
    latest, stamped = write_json(doc, tmp_path / "reports")
    assert latest == tmp_path / "reports" / "latest.json"
    assert stamped.name == "result-20250102T030405Z.json"
    assert load_json(latest) == doc
    assert load_json(stamped) == doc
    assert parse_document(json.loads(latest.read_text())) == doc
    # a second run in the same second keeps both copies
    _, again = write_json(doc, tmp_path / "reports")
    assert again != stamped and again.exists()


def test_document_rejects_unknown_scenario_keys() -> None:
    data = json.loads(to_json(document()))
    data["scenarios"][0]["p99_typo"] = 1
    with pytest.raises(ValueError):
        parse_document(data)


def test_baseline_from_a_stored_document(tmp_path: Path) -> None:
    latest, _ = write_json(document(), tmp_path)
    baseline = load_json(latest).scenario("stress")
    assert baseline is not None
    current = result("stress")  # no slow events now: p95 improved
    checks = compare_to_baseline(
        current.model_dump(), baseline.model_dump(), {"p95": 10.0, "throughput": 5.0}
    )
    assert [c.passed for c in checks] == [True, True]


# --- plots ---------------------------------------------------------------------------


def assert_png(data: bytes) -> None:
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1000


def test_plots_return_png_bytes() -> None:
    rng = np.random.default_rng(3)
    samples = rng.lognormal(2.5, 0.5, 2000)
    assert_png(latency_histogram(samples, slos=SLOS))
    assert_png(percentile_curve({"end-to-end": samples, "capture": samples / 3}, slos=SLOS))
    stages = {"capture": {"p50": 3.0, "p99": 9.0}, "kafka": {"p50": 1.0, "p99": 2.0}}
    assert_png(stage_breakdown(stages))
    assert_png(latency_vs_rate([(100, 5, 9, 99), (50, 4, 8, 50), (1000, 40, 400, 700)]))


def _png_width(png: bytes) -> int:
    return int.from_bytes(png[16:20], "big")  # IHDR's width field


def test_plots_are_drawn_at_twice_the_shown_width() -> None:
    # The page shows figures at most 700 px wide: 1,400 px stays sharp on 2x screens.
    samples = np.random.default_rng(4).lognormal(2.5, 0.5, 500)
    assert _png_width(latency_histogram(samples)) == 1400
    assert _png_width(stage_shares({"capture": {"mean": 1.0}, "kafka": {"mean": 3.0}})) == 1400


def test_plots_survive_empty_input() -> None:
    assert_png(stage_shares({}))
    assert_png(latency_histogram([]))
    assert_png(percentile_curve({"end-to-end": []}))
    assert_png(stage_breakdown({}))
    assert_png(latency_vs_rate([]))
    assert_png(latency_histogram([5.0]))  # one sample: a degenerate range


def test_scenario_plots() -> None:
    plots = scenario_plots(run(), SLOS, "stress")
    assert list(plots) == [
        "End-to-end latency histogram",
        "Latency by percentile",
        "Latency by stage",
        "Where the time goes",
    ]
    for png in plots.values():
        assert_png(png)


def test_png_data_uri() -> None:
    uri = png_data_uri(PNG_SIGNATURE + b"rest")
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == PNG_SIGNATURE + b"rest"


# --- HTML ----------------------------------------------------------------------------


def test_fragment_holds_the_figures_and_verdicts() -> None:
    entry = result("stress", slow_every=10)
    png = latency_histogram([1.0, 2.0, 3.0])
    fragment = scenario_fragment(entry, {"End-to-end latency": png})
    assert not fragment.lstrip().lower().startswith(("<!doctype", "<html"))
    assert "Scenario stress" in fragment
    assert f"{entry.e2e_ms.p99:.1f} ms" in fragment
    assert f"{entry.throughput_eps:.1f} row changes/s" in fragment
    assert "&lt; 200 ms" in fragment  # the p99 target, escaped
    assert "FAILED" in fragment and "PASSED" in fragment
    assert "#f8d7da" in fragment  # failure colouring
    assert png_data_uri(png) in fragment
    for stage in ("capture", "kafka", "consumer lag", "processing"):
        assert stage in fragment
    assert "order_placed" in fragment
    assert "<script" not in fragment and "<style" not in fragment


def test_fragment_accepts_a_dict_and_escapes() -> None:
    data = result("moderate").model_dump()
    data["name"] = "<b>x</b>"
    fragment = scenario_fragment(data, configuration=base_configuration(knobs={"k": "<v>"}))
    assert "<b>x</b>" not in fragment and "&lt;b&gt;x&lt;/b&gt;" in fragment
    assert "&lt;v&gt;" in fragment and "CPUs" in fragment


def test_standalone_page() -> None:
    doc = document()
    page = render_standalone(doc, {"stress": scenario_plots(run(), SLOS)})
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "Scenario moderate" in page and "Scenario stress" in page
    assert "0123abcd" in page
    assert "poll.interval.ms" in page and "4.3.0" in page
    assert page.count("data:image/png;base64,") == 4


def test_dead_lettered_count_is_in_the_json_and_the_html() -> None:
    stats = run()
    gates = evaluate(stats, SLOS, scenario="poison", integrity_pct=100.0)
    entry = scenario_result("poison", stats, gates, dead_lettered=3)
    doc = build_document([entry], base_configuration(), commit="c")
    data = json.loads(to_json(doc))
    assert data["scenarios"][0]["dead_lettered"] == 3
    assert parse_document(to_json(doc)).scenarios[0].dead_lettered == 3
    # an older document without the field reads as 0
    del data["scenarios"][0]["dead_lettered"]
    assert parse_document(data).scenarios[0].dead_lettered == 0
    fragment = scenario_fragment(entry)
    assert "3 dead-lettered" in fragment
    assert ">dead-lettered<" in fragment and ">3 events<" in fragment
    page = render_standalone(doc)
    assert ">dead-lettered<" in page  # the overview's column
