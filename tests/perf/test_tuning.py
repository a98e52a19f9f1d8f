"""The tuning sweep and the capacity search, each run for real on a short workload.

Kept short (seconds of load per run): these prove the commands measure and record what
they claim; the published figures come from longer runs on a quiet machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from event_processor.metrics.scenarios import Scenario, default_slos
from event_processor.perf.capacity import MAX_BACKLOG_GROWTH, RateSearch, run_capacity
from event_processor.perf.knobs import parse_knobs
from event_processor.perf.results import write_reports
from event_processor.perf.sweep import run_sweep
from event_processor.pytest_plugin import attach_html
from event_processor.report.html import capacity_section, sweep_section
from event_processor.report.schema import load_json
from event_processor.settings import Settings
from event_processor.stack.connect import current_connector_config

pytestmark = pytest.mark.stress

# The slowest rate a pipeline that passes the load scenarios must sustain (the moderate
# scenario offers twice this under the same p99 SLO).
CAPACITY_FLOOR = 100.0


def test_sweep_poll_interval_moves_p50(
    ep_stack: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    before = current_connector_config(ep_stack)
    assert before is not None
    scenario = Scenario(name="sweep", events=150, rate=100, seed=8, delivery_timeout_s=30,
                        warmup_events=5, slos=default_slos())  # fmt: skip
    sweep = run_sweep(ep_stack, scenario, parse_knobs(["poll.interval.ms=1,500"]))

    latest, _stamped, html = write_reports(sweep.outcomes, tmp_path, sweep=sweep.section)
    section = load_json(latest).sweep
    assert section is not None
    attach_html(request.node, sweep_section(section))
    by_value = {p.setting["poll.interval.ms"]: p for p in section.points}
    assert set(by_value) == {1, 500}, "the report must record both settings"
    for point in section.points:
        assert point.delivered and point.integrity_ok, f"{point.label}: data lost or differs"
    # Debezium sleeps poll.interval.ms whenever its queue is empty: at 100 events/s a
    # 500 ms poll interval must show in the median.
    fast, slow = by_value[1].p50_ms, by_value[500].p50_ms
    assert slow > fast, f"p50 at poll.interval.ms=500 ({slow} ms) <= at 1 ms ({fast} ms)"
    assert 'id="sweep"' in html.read_text()
    after = current_connector_config(ep_stack)
    assert after == before, "the sweep did not restore the connector's configuration"


def test_capacity_search_finds_a_sustainable_rate(
    ep_stack: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    p99 = default_slos().get("p99", 200.0)
    # No ramp-down below the floor: a pipeline that cannot carry it fails fast.
    controller = RateSearch(start=CAPACITY_FLOOR, maximum=800, minimum=CAPACITY_FLOOR,
                            max_steps=4)  # fmt: skip
    run = run_capacity(ep_stack, controller, duration_s=3, p99_ms=p99)
    cap = run.section

    latest, _stamped, html = write_reports(run.outcomes, tmp_path, capacity=cap)
    stored = load_json(latest).capacity
    if stored is not None:
        attach_html(request.node, capacity_section(stored))
    assert stored is not None and len(stored.steps) == len(cap.steps) >= 1
    assert 'id="capacity"' in html.read_text()
    for step in cap.steps:
        assert 1.5 <= step.row_rate / step.rate <= 3.5, "~2 row changes per business event"
        assert step.good or step.reasons, f"{step.rate}/s: bad without a reason"
        assert step.integrity_ok, f"{step.rate}/s: integrity verifier failed"
    found = cap.capacity_rate
    assert found >= CAPACITY_FLOOR, (
        f"no rate >= {CAPACITY_FLOOR:g}/s sustained within p99 {p99:g} ms: {cap.limited_by}"
    )
    best = next(s for s in cap.steps if s.good and s.rate == cap.capacity_rate)
    assert best.p99_ms <= p99
    assert best.backlog_growth <= MAX_BACKLOG_GROWTH * best.row_rate
    assert best.backlog_curve, "the step's backlog curve is recorded"
