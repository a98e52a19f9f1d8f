"""The race: the same inserts through our consumer and every peer sink (quix-streams,
MongoDB's Kafka sink connector in both its variants, Debezium's MongoDB sink).

A short run (`event-processor race` runs the full one): every sink, alone at the rate,
alone draining the same backlog, twice, interleaved, then all at once. Every row must
become visible through every sink with a real positive commit-to-visible time, every
sink's database must match PostgreSQL after every leg, and the targets of the issue are
asserted where our consumer meets them on this machine (see the README's race table);
afterwards no connector, group or race worker is left and the race tables are empty.
"""

from __future__ import annotations

from typing import Any

import pytest

from event_processor.pytest_plugin import attach_html
from event_processor.race import worker
from event_processor.race.result import integrity_text
from event_processor.race.run import run_race, sink_group
from event_processor.race.sinks import (
    DEBEZIUM,
    MONGO_CONNECTOR,
    MONGO_CONNECTOR_CDC,
    OURS,
    QUIX,
    SINKS,
    parse_sinks,
)
from event_processor.report.html import race_fragment
from event_processor.settings import Settings
from event_processor.source.schema import RACE_TABLES
from event_processor.stack import process

pytestmark = pytest.mark.stress

EVENTS = 300
RATE = 100.0
BACKLOG = 1000
REPEATS = 2
# Where ours meets the targets on every run here, asserted as (peer, figure):
# backlog throughput against every peer (3.8-207x in the runs of the README), p99
# against quix-streams (its checkpoint interval sits in every row's latency), CPU per
# row against the key-document connectors (0.04-0.18x). Not asserted, and shown in the
# report: p99 against the connectors (within noise of ours at this size: 0.8-1.03x
# against the scalar-_id connector; against the key-document ones the collection is too
# small here for FerretDB's scans to show), CPU against the scalar-_id connector (0.38x
# at the median, but its JVM came in at half ours in one repeat of each README run) and quix,
# which wins it (README "Race").
TARGETS_MET = (
    [(peer, "throughput") for peer in (QUIX, MONGO_CONNECTOR, MONGO_CONNECTOR_CDC, DEBEZIUM)]
    + [(QUIX, "p99")]
    + [(peer, "cpu") for peer in (MONGO_CONNECTOR_CDC, DEBEZIUM)]
)


def test_every_sink_applies_every_row_exactly_and_the_race_cleans_up(
    ep_stack: Settings, pg_conn: Any, request: pytest.FixtureRequest
) -> None:
    sinks = parse_sinks(",".join(SINKS))
    outcome = run_race(ep_stack, EVENTS, RATE, sinks=sinks, repeats=REPEATS,
                       backlog_rows=BACKLOG, timeout_s=180.0, plots=True)  # fmt: skip
    race = outcome.result
    attach_html(request.node, race_fragment(race, outcome.plots))

    modes = [(leg.mode, leg.repeat) for leg in race.legs]
    assert modes.count(("rate", 1)) == len(sinks) and modes.count(("drain", 2)) == len(sinks)
    assert ("together", 1) in modes
    for leg in race.legs:
        for name, side in leg.sides.items():
            where = f"{name} in {leg.mode} #{leg.repeat}"
            assert side.visible == leg.events, f"{where}: {side.visible}/{leg.events} visible"
            assert side.integrity is not None, where
            assert side.integrity.exact, f"{where}: {integrity_text(side.integrity)}"
            assert 0 < side.latency_ms.min <= side.latency_ms.p50 <= side.latency_ms.max
            if leg.mode == "drain":
                assert side.drain_rows_per_s and side.drain_rows_per_s > 0, where
                assert side.cpu_s_per_1000_rows and side.cpu_s_per_1000_rows > 0, where
    assert race.passed
    for name, summary in race.sinks.items():
        assert summary.config, f"{name}: no configuration printed"
        assert summary.why and summary.process
        assert summary.cpu_s_per_1000_rows is not None and summary.cpu_s_per_1000_rows.n == 2
    assert "connection.uri" not in race.sinks[MONGO_CONNECTOR].config
    assert len(outcome.samples_ms[OURS]) == EVENTS * REPEATS
    assert "race_percentiles" in outcome.plots

    for peer, key in TARGETS_MET:
        ratio = race.ratios[peer][key]
        assert race.targets[peer][key], f"ours/{peer} {key}: {ratio}"

    # Torn down: no race worker, no sink groups, the race tables empty.
    assert not process.is_ours_alive(process.read_pid(ep_stack.state_dir, worker.SERVICE))
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=ep_stack.kafka_servers())
    try:
        groups = {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()
    assert not any(g.startswith("ep-race-") for g in groups), groups
    assert not {sink_group(s) for s in sinks if s.kind == "connector"} & groups
    with pg_conn.cursor() as cur:
        for table in RACE_TABLES:
            cur.execute(f"SELECT count(*) FROM public.{table}")
            assert cur.fetchone()[0] == 0
