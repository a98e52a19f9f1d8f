"""The race: the same inserts through our consumer and Debezium's MongoDB sink connector.

A small run (the figures are for function; `event-processor race` runs the full one):
every row must become visible through both sinks, every latency must be a real positive
commit-to-visible time, and afterwards the sink connector is gone, its group deleted and
the race table empty, so the normal stack and the verifier are undisturbed.
"""

from __future__ import annotations

from typing import Any

import pytest

from event_processor.pytest_plugin import attach_html
from event_processor.race.result import OURS, SINK_CONNECTOR_NAME, THEIRS, sink_group
from event_processor.race.run import run_race
from event_processor.report.html import race_fragment
from event_processor.settings import Settings
from event_processor.source.schema import RACE_TABLE
from event_processor.stack import connect

pytestmark = pytest.mark.stress

EVENTS = 300
RATE = 100.0


def test_both_sinks_apply_every_row_and_the_race_cleans_up(
    ep_stack: Settings, pg_conn: Any, request: pytest.FixtureRequest
) -> None:
    outcome = run_race(ep_stack, EVENTS, RATE, timeout_s=180.0, plots=True)
    race = outcome.result
    attach_html(request.node, race_fragment(race, outcome.plots))

    for side in (OURS, THEIRS):
        s = race.sides[side]
        assert s.visible == EVENTS, f"{s.label}: only {s.visible} of {EVENTS} rows visible"
        assert s.latency_ms.count == EVENTS
        assert 0 < s.latency_ms.min <= s.latency_ms.p50 <= s.latency_ms.p99 <= s.latency_ms.max
        assert s.throughput_eps > 0
        assert len(outcome.samples_ms[side]) == EVENTS
    assert race.passed
    assert set(race.ratios) == {"throughput", "p50", "p95", "p99"}
    assert all(v is not None and v > 0 for v in race.ratios.values())
    assert "race_percentiles" in outcome.plots
    # Issue 8's bar: our consumer at least equal to Debezium's sink on both.
    ours, theirs = race.sides[OURS], race.sides[THEIRS]
    assert ours.throughput_eps >= theirs.throughput_eps, race.ratios
    assert ours.latency_ms.p99 <= theirs.latency_ms.p99, race.ratios

    # Torn down: the sink no longer consumes, its group is gone, the table is empty.
    assert connect.connector_status(ep_stack, SINK_CONNECTOR_NAME) is None
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=ep_stack.kafka_servers())
    try:
        groups = {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()
    assert sink_group() not in groups
    with pg_conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM public.{RACE_TABLE}")
        assert cur.fetchone()[0] == 0
