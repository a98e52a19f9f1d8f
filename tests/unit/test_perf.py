"""The run harness's pure parts: command-line resolution, gates and result assembly."""

from __future__ import annotations

import argparse
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from event_processor.cli import build_parser
from event_processor.cli.options import CUSTOM_NAME, resolve_scenario
from event_processor.errors import ConfigError
from event_processor.metrics.scenarios import Scenario, ScenarioError
from event_processor.metrics.slo import SloError
from event_processor.metrics.stats import summarize_run
from event_processor.metrics.timing import SendRecord, TimingRecord
from event_processor.perf.harness import (
    VerifyOutcome,
    assemble,
    delivered_rows,
    expected_topics,
)
from event_processor.perf.results import document, gate_lines, read_document, results_table
from event_processor.report.schema import Configuration, parse_document, to_json
from event_processor.settings import Settings

pytestmark = pytest.mark.unit

SCENARIOS = """
[defaults]
delivery_timeout_s = 30
[defaults.slo]
p50 = "30ms"
p99 = "200ms"
throughput = 1
success = "99.9%"
integrity = "100%"

[scenario.small]
events = 10
rate = 50
seed = 1

[scenario.big]
events = 1000
rate = 500
seed = 2
warmup_events = 20
"""


@pytest.fixture
def scenarios_file(tmp_path: Path) -> Path:
    path = tmp_path / "scenarios.toml"
    path.write_text(SCENARIOS)
    return path


def _load_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["load", *argv])


def test_load_by_scenario_name_with_overrides(scenarios_file: Path) -> None:
    args = _load_args("--scenario", "big", "--slo", "p99=150ms", "--seed", "9", "--no-dashboard")
    s = resolve_scenario(args, scenarios_file)
    assert (s.name, s.events, s.rate, s.seed, s.warmup_events) == ("big", 1000, 500.0, 9, 20)
    assert s.slos["p99"] == 150.0 and s.slos["p50"] == 30.0
    assert args.no_dashboard and not args.json


def test_load_custom_run_takes_the_default_slos(scenarios_file: Path) -> None:
    s = resolve_scenario(_load_args("--events", "200", "--rate", "100"), scenarios_file)
    assert (s.name, s.events, s.rate, s.seed, s.warmup_events) == (CUSTOM_NAME, 200, 100.0, 42, 0)
    assert s.delivery_timeout_s == 60.0
    assert s.slos["integrity"] == 100.0 and s.slos["p50"] == 30.0


def test_unknown_scenario_names_the_valid_ones(scenarios_file: Path) -> None:
    with pytest.raises(ScenarioError) as err:
        resolve_scenario(_load_args("--scenario", "nope"), scenarios_file)
    assert "small, big" in err.value.one_line()
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("--scenario", "small", "--events", "5"), "not both"),
        (("--events", "5"), "no scenario given"),
        ((), "no scenario given"),
        (("--events", "0", "--rate", "1"), "--events"),
        (("--events", "5", "--rate", "0"), "--rate"),
        (("--events", "5", "--rate", "1", "--warmup", "5"), "--warmup"),
    ],
)
def test_bad_load_arguments_are_one_line_errors(
    scenarios_file: Path, argv: tuple[str, ...], needle: str
) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_scenario(_load_args(*argv), scenarios_file)
    assert needle in err.value.one_line()


def test_misspelled_slo_override_is_an_error(scenarios_file: Path) -> None:
    with pytest.raises(SloError):
        resolve_scenario(_load_args("--scenario", "small", "--slo", "p98=1ms"), scenarios_file)


def test_report_subcommand_parses() -> None:
    args = build_parser().parse_args(["report", "--json", "x.json"])
    assert args.path == Path("x.json")
    assert build_parser().parse_args(["report"]).path is None


# --- result assembly ------------------------------------------------------------------

BASE = 1_700_000_000_000_000


def _run(n: int, e2e_us: int) -> tuple[list[TimingRecord], list[SendRecord]]:
    timings, sends = [], []
    for i in range(n):
        t0 = BASE + i * 10_000
        timings.append(
            TimingRecord(
                "customers",
                "c",
                str(i),
                100 + i,
                i,
                t0,
                t0 + 100,
                t0 + 1000,
                t0 + 2000,
                t0 + 2500,
                t0 + e2e_us,
            )
        )
        sends.append(SendRecord(i, "customer_signup", 100 + i, t0 - 500, t0 - 400, t0, 1))
    return timings, sends


def _scenario(**slos: float) -> Scenario:
    return Scenario("small", events=10, rate=50, seed=1, delivery_timeout_s=30, slos=slos)


def test_assemble_gates_and_report_entry() -> None:
    timings, sends = _run(10, 20_000)
    stats = summarize_run(timings, sends, None)
    gates, baseline_gates, result = assemble(
        _scenario(p50=30.0, p99=10.0, integrity=100.0), stats, 100.0
    )
    by_name = {g.name: g for g in gates}
    assert by_name["p50"].passed and not by_name["p99"].passed and by_name["integrity"].passed
    assert by_name["p99"].message == "small: e2e p99 = 20.0 ms, target < 10 ms: FAILED"
    assert baseline_gates == []
    assert result.name == "small" and result.seed == 1 and result.rate == 50.0
    assert not result.passed
    assert result.slo["p50"].measured == 20.0


def test_failed_verifier_fails_the_integrity_gate() -> None:
    timings, sends = _run(10, 5_000)
    stats = summarize_run(timings, sends, None)
    verify = VerifyOutcome(False, ["verify FAILED"], {"rows": 100, "total_findings": 1})
    assert 98.9 < verify.integrity_pct < 100.0
    assert VerifyOutcome(False, [], error="boom").integrity_pct == 0.0
    assert VerifyOutcome(True, []).integrity_pct == 100.0
    gates, _, result = assemble(_scenario(integrity=100.0), stats, verify.integrity_pct)
    assert not gates[0].passed and not result.passed


def test_baseline_regression_is_a_failed_check() -> None:
    before = summarize_run(*_run(10, 5_000), None)
    now = summarize_run(*_run(10, 10_000), None)
    _, checks, result = assemble(
        _scenario(p50=30.0), now, None, baseline=before.to_dict(), tolerances={"p50": 15.0}
    )
    assert len(checks) == 1 and not checks[0].passed
    assert "REGRESSION" in checks[0].message
    assert not result.passed


def test_delivered_rows_counts_distinct_changes_of_the_run() -> None:
    timings, _ = _run(5, 1_000)
    assert delivered_rows(timings + timings[:2], {100, 101, 102}) == 3
    assert delivered_rows(timings, set()) == 0


def test_expected_topics_follow_the_prefix() -> None:
    topics = expected_topics(Settings(topic_prefix="xx"))
    assert topics == ["xx.public.customers", "xx.public.products", "xx.aggregate.orders"]


def test_document_table_and_round_trip(tmp_path: Path) -> None:
    stats = summarize_run(*_run(10, 5_000), None)
    _, _, ok = assemble(_scenario(p50=30.0), stats, 100.0)
    _, _, bad = assemble(Scenario("other", 10, 50.0, 2, 30.0, slos={"p50": 1.0}), stats, 100.0)
    configs = [
        Configuration.model_validate({"knobs": {"a": 1}, "scenario": "small", "seed": 1}),
        Configuration.model_validate({"knobs": {"a": 2}, "scenario": "other", "seed": 2}),
    ]
    doc = document([ok, bad], configs, commit="abc")
    assert not doc.passed
    runs = doc.configuration.model_dump()["runs"]
    assert runs["other"]["seed"] == 2 and runs["small"]["knobs"] == {"a": 1}
    assert gate_lines(doc)[0] == "other: e2e p50 = 5.0 ms, target < 1 ms: FAILED"
    assert parse_document(to_json(doc)).scenarios[1].name == "other"

    buf = StringIO()
    Console(file=buf, width=160).print(results_table(doc))
    text = buf.getvalue()
    assert "small" in text and "PASSED" in text and "FAILED" in text and "5.0" in text

    path = tmp_path / "latest.json"
    path.write_text(to_json(doc))
    assert read_document(path).commit == "abc"
    with pytest.raises(ConfigError, match="not found"):
        read_document(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not a result document"):
        read_document(tmp_path / "bad.json")
