"""SLO parsing, gates and baseline regression checks."""

from __future__ import annotations

from typing import Any

import pytest

from event_processor.errors import ConfigError
from event_processor.metrics.slo import (
    SloError,
    compare_to_baseline,
    evaluate,
    failed,
    gate,
    parse_overrides,
    parse_slo,
    parse_target,
    parse_tolerance,
    parse_tolerances,
    validate_targets,
)
from event_processor.metrics.stats import LatencySummary, RunStats

pytestmark = pytest.mark.unit


def stats(
    p50: float = 10.0,
    p95: float = 50.0,
    p99: float = 150.0,
    *,
    count: int = 1000,
    throughput: float = 500.0,
    applied: int = 1000,
    committed: int | None = 1000,
) -> RunStats:
    e2e = LatencySummary(count, 1.0, p50, p50, p95, p99, p99 * 1.5, p99 * 2)
    return RunStats(
        events=applied,
        committed=committed,
        applied=applied,
        duplicates=0,
        throughput_eps=throughput,
        business_events_per_s=throughput / 2,
        success_rate=applied / committed if committed else None,
        duration_s=2.0,
        end_to_end=e2e if count else LatencySummary(),
        stages={},
        by_table_op={},
        by_kind={},
        unmatched_sends=0,
        schedule_lag=LatencySummary(),
        commit_time=LatencySummary(),
    )


DEFAULTS = {
    "p50": 30.0,
    "p95": 100.0,
    "p99": 200.0,
    "throughput": 100.0,
    "success": 99.9,
    "integrity": 100.0,
}


# --- parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p99=150ms", ("p99", 150.0)),
        ("p95=0.1s", ("p95", 100.0)),
        ("p50=500us", ("p50", 0.5)),
        ("p999=250", ("p999", 250.0)),  # bare number: ms
        ("MAX = 1s", ("max", 1000.0)),
        ("throughput=200", ("throughput", 200.0)),
        ("throughput=200eps", ("throughput", 200.0)),
        ("success=99.9%", ("success", 99.9)),
        ("success=0.999", ("success", 99.9)),  # a fraction
        ("success=99.5", ("success", 99.5)),  # above 1: already percent
        ("integrity=100%", ("integrity", 100.0)),
    ],
)
def test_parse_slo(text: str, expected: tuple[str, float]) -> None:
    name, target = parse_slo(text)
    assert name == expected[0]
    assert target == pytest.approx(expected[1])


@pytest.mark.parametrize("text", ["p98=100ms", "latency=100ms"])
def test_an_unknown_slo_name_lists_the_valid_ones(text: str) -> None:
    with pytest.raises(SloError) as info:
        parse_slo(text)
    message = str(info.value)
    assert "\n" not in message
    assert (
        "p50, p95, p99, p999, max, intended_p50, intended_p95, intended_p99, throughput, "
        "success, integrity" in message
    )


@pytest.mark.parametrize(
    "text",
    [
        "p99",  # no value
        "p99=",
        "=100ms",
        "p99=fast",
        "p99=100kg",  # unknown unit
        "p99=0ms",  # a latency bound of 0 can never pass
        "p99=-5ms",
        "success=101%",
        "success=5ms",
        "throughput=100ms",
        "p99=nan",
    ],
)
def test_a_bad_slo_value_says_how_to_write_one(text: str) -> None:
    with pytest.raises(SloError) as info:
        parse_slo(text)
    message = str(info.value)
    assert "\n" not in message
    # The name may be right: listing the valid names would send the user the wrong way.
    assert "valid names" not in message
    assert "write a latency as 150ms, 0.2s or 900us" in message


def test_slo_error_is_a_value_error_and_a_config_error() -> None:
    with pytest.raises(ValueError):
        parse_target("p98", 1)
    with pytest.raises(ConfigError, match="unknown SLO metric 'p98'"):
        parse_target("p98", 1)


def test_bool_is_not_a_target() -> None:
    with pytest.raises(SloError):
        parse_target("throughput", True)


def test_parse_overrides_comma_separated_and_repeated() -> None:
    assert parse_overrides(["p99=150ms,p95=0.1s", "throughput=200"]) == {
        "p99": 150.0,
        "p95": 100.0,
        "throughput": 200.0,
    }
    assert parse_overrides("success=99%") == {"success": 99.0}


def test_validate_targets_from_data() -> None:
    assert validate_targets({"p99": "200ms", "throughput": 100, "success": "99.9%"}) == {
        "p99": 200.0,
        "throughput": 100.0,
        "success": 99.9,
    }
    with pytest.raises(SloError):
        validate_targets({"p99.9": 300})


# --- gates ---------------------------------------------------------------------------


def test_failed_gate_message() -> None:
    result = gate("p99", 212.4, 200.0, scenario="stress")
    assert not result.passed
    assert result.message == "stress: e2e p99 = 212.4 ms, target < 200 ms: FAILED"
    assert result.kind == "latency" and result.comparison == "<"


def test_latency_bound_is_strict() -> None:
    assert not gate("p99", 200.0, 200.0).passed
    assert gate("p99", 199.9, 200.0).passed


def test_evaluate_all_pass_in_order_and_kinds() -> None:
    results = evaluate(stats(), DEFAULTS, scenario="moderate", integrity_pct=100.0)
    assert [r.name for r in results] == [
        "p50",
        "p95",
        "p99",
        "throughput",
        "success",
        "integrity",
    ]
    assert all(r.passed for r in results)
    kinds = {r.name: r.kind for r in results}
    assert kinds["p99"] == "latency"
    assert kinds["throughput"] == "throughput"
    assert kinds["integrity"] == "integrity"
    assert results[3].message == (
        "moderate: throughput = 500.0 row changes/s, target > 100 row changes/s: PASSED"
    )


def test_evaluate_detects_each_breach() -> None:
    run = stats(p50=31.0, p99=212.4, throughput=80.0, applied=998, committed=1000)
    results = evaluate(run, DEFAULTS, scenario="stress", integrity_pct=99.8)
    by_name = {r.name: r for r in results}
    assert not by_name["p50"].passed
    assert by_name["p95"].passed
    assert not by_name["p99"].passed
    assert not by_name["throughput"].passed
    assert not by_name["success"].passed
    assert by_name["success"].measured == pytest.approx(99.8)
    assert by_name["success"].message == "stress: success = 99.8 %, target > 99.9 %: FAILED"
    assert not by_name["integrity"].passed
    assert [r.name for r in failed(results, "latency")] == ["p50", "p99"]
    assert [r.name for r in failed(results, "integrity")] == ["success", "integrity"]


def test_success_exactly_at_target_fails_strict_bound() -> None:
    # 999 of 1000 is exactly 99.9 %, not above it.
    results = evaluate(stats(applied=999, committed=1000), {"success": 99.9})
    assert results[0].measured == 99.9 and not results[0].passed


def test_no_samples_fails_rather_than_passes() -> None:
    results = evaluate(stats(count=0, applied=0, throughput=0.0), {"p99": 200.0, "throughput": 1.0})
    assert [r.passed for r in results] == [False, False]
    assert "n/a" in results[0].message


def test_integrity_gate_needs_the_verifier_figure() -> None:
    results = evaluate(stats(), {"integrity": 100.0})
    assert results == []
    (result,) = evaluate(stats(), {"integrity": 100.0}, integrity_pct=100.0)
    assert result.passed and result.comparison == ">="


def test_evaluate_rejects_unknown_metric() -> None:
    with pytest.raises(SloError, match="p98"):
        evaluate(stats(), {"p98": 10.0})


def test_gate_to_dict() -> None:
    data = gate("p50", 10.0, 30.0, "x").to_dict()
    assert data["name"] == "p50" and data["passed"] is True and data["kind"] == "latency"


# --- baseline ------------------------------------------------------------------------


def figures(p95: float, throughput: float, success: float | None = 1.0) -> dict[str, Any]:
    e2e = {"count": 100, "p50": 10.0, "p95": p95, "p99": 150.0, "p999": 180.0, "max": 190.0}
    return {"e2e_ms": e2e, "throughput_eps": throughput, "success_rate": success}


def test_parse_tolerances() -> None:
    assert parse_tolerance("p95:15%") == ("p95", 15.0)
    assert parse_tolerances("p95:15%,throughput:10") == {"p95": 15.0, "throughput": 10.0}
    for bad in ("p95", "p95:", "p98:10%", "p95:10ms", "integrity:1%", "p95:-5%"):
        with pytest.raises(SloError):
            parse_tolerance(bad)


def test_latency_regression_detected() -> None:
    tol = {"p95": 15.0}
    (ok,) = compare_to_baseline(figures(114.9, 500), figures(100.0, 500), tol)
    assert ok.passed
    (bad,) = compare_to_baseline(figures(115.1, 500), figures(100.0, 500), tol, scenario="s")
    assert not bad.passed
    assert bad.target == pytest.approx(115.0)
    assert bad.message == (
        "s: e2e p95 = 115.1 ms vs baseline 100.0 ms (+15.1 %, allowed +15 %): REGRESSION"
    )


def test_improvement_is_not_a_regression() -> None:
    (result,) = compare_to_baseline(figures(50.0, 500), figures(100.0, 500), {"p95": 0.0})
    assert result.passed


def test_throughput_and_success_regress_downwards() -> None:
    tol = {"throughput": 10.0, "success": 0.1}
    ok = compare_to_baseline(figures(100, 455.0, 0.9995), figures(100, 500.0, 1.0), tol)
    assert [r.passed for r in ok] == [True, True]
    bad = compare_to_baseline(figures(100, 449.0, 0.998), figures(100, 500.0, 1.0), tol)
    assert [r.passed for r in bad] == [False, False]
    assert bad[0].kind == "throughput"


def test_missing_baseline_value_fails() -> None:
    (result,) = compare_to_baseline(
        figures(100, 500), figures(100, 500, success=None), {"success": 1.0}
    )
    assert not result.passed
    assert "baseline" in result.message


def test_latency_from_the_intended_send_can_be_gated() -> None:
    """intended_p99 gates T5 - intended send: a run whose commit-to-ack p99 passes fails
    when the generator was late; without samples it fails rather than passes."""
    import dataclasses

    run = dataclasses.replace(
        stats(p99=150.0),
        from_intended=LatencySummary(1000, 1.0, 40.0, 40.0, 300.0, 900.0, 950.0, 990.0),
    )
    targets = {"p99": 200.0, **parse_overrides("intended_p99=200ms")}
    by_name = {r.name: r for r in evaluate(run, targets, scenario="stress")}
    assert by_name["p99"].passed
    assert not by_name["intended_p99"].passed
    assert by_name["intended_p99"].message == (
        "stress: e2e from intended p99 = 900.0 ms, target < 200 ms: FAILED"
    )
    assert not evaluate(stats(), {"intended_p50": 30.0})[0].passed  # nothing measured
