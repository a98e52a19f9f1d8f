"""The black-box mode: measure a pipeline that is not ours, from the outside.

``event-processor load --sink external`` does not start our consumer. It writes a
workload into a benchmark table of the user's PostgreSQL (``EP_EXTERNAL_TABLE``,
created when missing: ``id bigint primary key, payload text``), at a scenario's rate
and size, and times each row from its commit to its document being visible in the
user's MongoDB, with the race's watcher. Afterwards the documents are compared with the
rows (count and payload), the scenario's SLOs are gated, and the rows are deleted again.

How rows map to documents is configuration (``Settings.external_*``), by default:
database the one of ``EP_MONGO_URI`` (else ``EP_MONGO_DATABASE``), collection the
table's name, one document per row, ``_id`` "auto": ``"42"`` (ours, quix-streams),
``42`` (a scalar key, MongoDB's connector with ``ProvidedInKeyStrategy``) or
``{"id": 42}`` (the key document: Debezium's sink, MongoDB's Debezium handler). The
payload must be a top-level field ``payload``. Embedded children are not supported
here: the benchmark table is flat.

What it needs from the user's Debezium connector: the benchmark table captured (in its
publication and ``table.include.list``). The commit time T0 is ``source.ts_us`` of each
row's change event on ``EP_EXTERNAL_TOPIC`` (default ``<prefix>.<schema>.<table>``);
with ``ExtractNewRecordState`` that field is there only with ``add.fields=source.ts_us``.
When the topic cannot be read or has no ``source.ts_us``, T0 is the moment the commit
returned to the generator (a little later than the commit: latencies read low by the
round trip), and the report says so. What it cannot measure: the split into stages
(without our consumer's stamps there is only commit -> visible), and the pipeline's CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from event_processor.metrics.scenarios import Scenario
from event_processor.metrics.slo import GateResult, gate
from event_processor.metrics.timing import wall_us
from event_processor.race.result import integrity, integrity_text, side_result
from event_processor.race.run import (
    ProgressFn,
    run_inserts,
    sink_documents,
    source_rows,
    start_offsets,
    wait_for,
)
from event_processor.race.sinks import Sink
from event_processor.race.watch import CommitReader, Watcher, make_probe
from event_processor.report.schema import RaceIntegrity, RaceSide
from event_processor.settings import Settings
from event_processor.testing import wait_until

EXTERNAL = "external"
WARMUP_ROWS = 3
ID_KINDS = {"auto": "auto", "string": "str", "number": "int", "key-document": "doc"}
LATENCY_SLOS = ("p50", "p95", "p99", "max")


@dataclass(frozen=True, slots=True)
class Mapping:
    """Where the user's pipeline puts the benchmark table's rows."""

    schema: str
    table: str
    database: str
    collection: str
    id_rule: str
    topic: str

    @property
    def relation(self) -> str:
        return f'"{self.schema}"."{self.table}"'

    def sink(self) -> Sink:
        return Sink(EXTERNAL, "your pipeline", "external", ID_KINDS[self.id_rule],
                    "started by you; measured from the outside", db=self.database)  # fmt: skip

    def describe(self) -> dict[str, str]:
        return {
            "table": f"{self.schema}.{self.table}",
            "database": self.database,
            "collection": self.collection,
            "_id rule": self.id_rule,
            "commit-time topic": self.topic,
        }


def mapping_from(settings: Settings) -> Mapping:
    schema, table = settings.external_table.split(".", 1)
    return Mapping(
        schema=schema,
        table=table,
        database=settings.external_database or settings.mongo_database,
        collection=settings.external_collection or table,
        id_rule=settings.external_id,
        topic=settings.external_topic or f"{settings.topic_prefix}.{schema}.{table}",
    )


@dataclass
class ExternalOutcome:
    side: RaceSide
    gates: list[GateResult]
    t0_source: str
    mapping: Mapping
    samples_ms: list[float]

    @property
    def passed(self) -> bool:
        exact = self.side.integrity is not None and self.side.integrity.exact
        return exact and all(g.passed for g in self.gates)


def _execute(settings: Settings, sql: str, params: Any = None) -> None:
    import psycopg2

    conn = psycopg2.connect(settings.postgres_dsn(), application_name="ep-external")
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def prepare_table(settings: Settings, m: Mapping) -> None:
    """Create the benchmark table when missing and empty it (DELETE: the user's pipeline
    sees deletes of rows it has, not a TRUNCATE it may not handle)."""
    _execute(settings, f"CREATE TABLE IF NOT EXISTS {m.relation} (id bigint PRIMARY KEY, "
             "payload text NOT NULL, created timestamptz NOT NULL DEFAULT now())")  # fmt: skip
    _execute(settings, f"DELETE FROM {m.relation}")


def documents(settings: Settings, m: Mapping, ids: set[int]) -> list[tuple[int, Any]]:
    """The collection's documents of ``ids`` as (row id, payload), by the mapping's
    ``_id`` rule."""
    return sink_documents(settings, m.sink(), m.collection, ids)


def verify_external(settings: Settings, m: Mapping | None = None) -> RaceIntegrity:
    """The benchmark table's rows against the user's documents by the same mapping."""
    m = m or mapping_from(settings)
    import psycopg2

    conn = psycopg2.connect(settings.postgres_dsn(), application_name="ep-external-verify")
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id, payload FROM {m.relation}")
            rows = {int(i): str(p) for i, p in cur.fetchall()}
    finally:
        conn.close()
    return integrity(rows, documents(settings, m, set(rows)))


def _topic_readable(settings: Settings, topic: str) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers(),
                                 request_timeout_ms=5000)  # fmt: skip
    except KafkaError:
        return False
    try:
        return topic in admin.list_topics()
    except KafkaError:
        return False
    finally:
        admin.close()


def run_external(
    settings: Settings, scenario: Scenario, *, poll_ms: float = 2.0, say: ProgressFn | None = None
) -> ExternalOutcome:
    """Measure the user's pipeline on ``scenario``'s rate and size (see the module)."""
    say = say or (lambda _msg: None)
    m = mapping_from(settings)
    sink = m.sink()
    say(f"black box: rows into {m.schema}.{m.table}, documents from "
        f"{m.database}.{m.collection} (_id {m.id_rule}); our consumer is not started")  # fmt: skip
    prepare_table(settings, m)
    reader: CommitReader | None = None
    if _topic_readable(settings, m.topic):
        reader = CommitReader(settings, m.topic, start_offsets(settings, m.topic))
        reader.start()
    acked: dict[int, int] = {}

    def committed(row_id: int) -> None:
        acked[row_id] = wall_us()
        watcher.add(row_id)

    probe = make_probe(settings, sink, m.collection)
    watcher = Watcher({EXTERNAL: probe}, poll_ms / 1000)
    watcher.start()
    ids = list(range(1, scenario.events + 1))
    try:
        warm = [-k for k in range(1, WARMUP_ROWS + 1)]
        run_inserts(settings.postgres_dsn(), warm, 50.0, committed, m.relation)
        wait_for(lambda: watcher.count(EXTERNAL, set(warm)) == len(warm), 60.0,
                 f"no warm-up row became visible in {m.database}.{m.collection}",
                 f"check that your connector captures {m.schema}.{m.table} and your sink "
                 "writes it there (EP_EXTERNAL_DATABASE, EP_EXTERNAL_COLLECTION, "
                 "EP_EXTERNAL_ID)")  # fmt: skip
        say(f"{scenario.events} rows at {scenario.rate:g}/s")
        run_inserts(settings.postgres_dsn(), ids, scenario.rate, committed, m.relation)
        wanted = set(ids)
        deadline = time.monotonic() + scenario.delivery_timeout_s
        while time.monotonic() < deadline and watcher.count(EXTERNAL, wanted) < len(ids):
            time.sleep(0.05)
        if reader is not None:  # the change events came before the documents
            r = reader
            wait_until(lambda: r.count(wanted) == len(ids), 10.0)
        visible = watcher.snapshot()[EXTERNAL]
    finally:
        watcher.stop()
        probe.close()
        if reader is not None:
            reader.stop()
    t0 = reader.snapshot() if reader is not None else {}
    t0_source = f"source.ts_us on {m.topic}"
    if len([i for i in ids if i in t0]) < len(ids):
        t0, t0_source = acked, "commit acknowledged to the generator (no source.ts_us read)"
    seen = {i: v for i, v in visible.items() if i in wanted}
    side = side_result(sink.label, m.database, ids, t0, seen)
    rows = source_rows(settings, m.relation, ids)
    side.integrity = integrity(rows, documents(settings, m, set(ids)))
    wrong = side.integrity.missing + side.integrity.mismatched + side.integrity.extra
    integrity_pct = 100.0 * max(0, len(ids) - wrong) / len(ids)
    gates = [gate(n, _figure(side, n), t, scenario.name)
             for n, t in scenario.slos.items() if n in LATENCY_SLOS]  # fmt: skip
    if "success" in scenario.slos:
        gates.append(gate("success", 100.0 * side.visible / len(ids), scenario.slos["success"],
                          scenario.name))  # fmt: skip
    if "integrity" in scenario.slos:
        gates.append(gate("integrity", integrity_pct, scenario.slos["integrity"], scenario.name))
    _execute(settings, f"DELETE FROM {m.relation}")
    samples = [(seen[i] - t0[i]) / 1000 for i in ids if i in seen and i in t0]
    return ExternalOutcome(side, gates, t0_source, m, samples)


def _figure(side: RaceSide, name: str) -> float | None:
    if not side.latency_ms.count:
        return None
    return float(getattr(side.latency_ms, name))


def outcome_lines(o: ExternalOutcome) -> list[str]:
    """What a terminal shows of a black-box run."""
    s = o.side.latency_ms
    check = o.side.integrity
    return [
        f"black box ({probe_name_for(o)}): {o.side.visible}/{o.side.latency_ms.count or 0} "
        f"timed; commit -> visible p50 {s.p50:.1f} ms, p95 {s.p95:.1f} ms, p99 {s.p99:.1f} "
        f"ms, max {s.max:.1f} ms; T0 = {o.t0_source}",
        "integrity: " + (integrity_text(check) if check else "not checked"),
        *(g.message for g in o.gates),
        "not measured in this mode: the split into stages (no stamps of ours) and the "
        "pipeline's CPU",
    ]


def probe_name_for(o: ExternalOutcome) -> str:
    return "mapping " + ", ".join(f"{k} {v}" for k, v in o.mapping.describe().items())
