"""The scenarios file: the shipped one, and the loader's validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from event_processor.metrics.scenarios import (
    ScenarioError,
    get_scenario,
    load_scenarios,
    select,
)
from event_processor.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

VALID = """
[defaults]
delivery_timeout_s = 30
[defaults.slo]
p99 = "200ms"
throughput = 100

[scenario.small]
events = 10
rate = 50
seed = 1
[scenario.small.slo]
throughput = 20

[scenario.big]
events = 1000
rate = 500
seed = 2
warmup_events = 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenarios.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_file_has_the_four_scenarios() -> None:
    scenarios = load_scenarios()
    assert list(scenarios) == ["warmup", "moderate", "stress", "extreme"]
    assert [s.events for s in scenarios.values()] == [10, 100, 1000, 10000]
    assert (PROJECT_ROOT / "scenarios.toml").is_file()


def test_shipped_slos() -> None:
    scenarios = load_scenarios()
    stress = scenarios["stress"]
    assert stress.slos == {
        "p50": 30.0,
        "p95": 100.0,
        "p99": 200.0,
        "throughput": 100.0,
        "success": 99.9,
        "integrity": 100.0,
    }
    for s in scenarios.values():
        # throughput is bounded by the offered rate: a target at or above it always fails
        assert s.slos["throughput"] < s.rate, s.name
        assert 0 <= s.warmup_events < s.events
    assert scenarios["warmup"].slos["throughput"] < 100.0


def test_defaults_and_per_scenario_slos_merge(tmp_path: Path) -> None:
    scenarios = load_scenarios(write(tmp_path, VALID))
    small, big = scenarios["small"], scenarios["big"]
    assert small.slos == {"p99": 200.0, "throughput": 20.0}
    assert big.slos == {"p99": 200.0, "throughput": 100.0}
    assert small.delivery_timeout_s == 30.0 and small.warmup_events == 0
    assert big.measured_events == 990
    assert big.duration_s == pytest.approx(2.0)


def test_with_slos_overrides_one_metric() -> None:
    stress = get_scenario("stress").with_slos({"p99": 150.0})
    assert stress.slos["p99"] == 150.0 and stress.slos["p50"] == 30.0


def test_unknown_scenario_lists_known_names(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    with pytest.raises(ScenarioError) as info:
        get_scenario("stres", path)
    message = str(info.value)
    assert "\n" not in message
    assert "'stres'" in message and "small, big" in message
    with pytest.raises(ScenarioError, match="warmup, moderate, stress, extreme"):
        select(load_scenarios(), "nope")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (VALID + "\n[scenario.typo]\nevents = 1\nrate = 1\nseed = 1\nrtae = 5\n", "'rtae'"),
        (VALID.replace('p99 = "200ms"', 'p98 = "200ms"'), "p98"),
        (VALID.replace('p99 = "200ms"', 'p99 = "fast"'), "p99"),
        (VALID + "\n[other]\nx = 1\n", "'other'"),
        (VALID.replace("events = 10\n", 'events = "ten"\n'), "events"),
        (VALID.replace("events = 10\n", "events = true\n"), "events"),
        (VALID.replace("events = 10\n", "events = 0\n"), "events"),
        (VALID.replace("rate = 50\n", "rate = 0\n"), "rate"),
        (VALID.replace("seed = 1\n", ""), "missing seed"),
        (VALID.replace("warmup_events = 10", "warmup_events = 1000"), "warmup_events"),
        ("[defaults]\n", "no [scenario"),
        ("[scenario.x\n", "scenarios.toml"),
    ],
)
def test_invalid_files_are_one_line_errors(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenarios(write(tmp_path, text))
    assert fragment in str(info.value)


def test_slo_error_in_file_lists_valid_names(tmp_path: Path) -> None:
    text = VALID.replace('p99 = "200ms"', 'p98 = "200ms"')
    with pytest.raises(
        ScenarioError,
        match="p50, p95, p99, p999, max, intended_p50, intended_p95, intended_p99, throughput",
    ):
        load_scenarios(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not found"):
        load_scenarios(tmp_path / "absent.toml")
