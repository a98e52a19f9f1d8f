"""Kill or stop each real process mid-load; after recovery the verifier must pass."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from event_processor.settings import Settings
from event_processor.stack import connect, ferretdb, kafka, postgres, process
from event_processor.testing import free_port
from tests.faults.fault_helpers import (
    FaultProbe,
    duplicates_skipped,
    new_group,
    verify_ok,
    wait_consuming,
    wait_s,
)

pytestmark = pytest.mark.fault


def _run_fault(
    settings: Settings,
    start_consumer: Any,
    background_load: Any,
    name: str,
    inject: Any,
    events: int = 600,
    rate: float = 100,
) -> dict[str, Any]:
    group = new_group()
    port = free_port()
    consumer = start_consumer("f1", group=group, metrics_port=port)
    # Consuming first (a new group skips the history), so duplicates count only replays.
    wait_consuming(settings, group)
    probe = FaultProbe(settings, name)
    load = background_load(events, rate)
    wait_s(2.0)  # let the load run before the fault hits
    probe.fault(load)
    consumer = inject(consumer, group, port) or consumer
    probe.restored()
    load.wait()
    recovered = probe.await_recovery()  # the probe stops committing here
    lost, mismatched = verify_ok(settings, group)
    duplicates = duplicates_skipped(port)
    row = probe.finish(duplicates, lost, mismatched)
    assert recovered is not None, f"{name}: no change committed after the restore was applied"
    return row


def test_consumer_killed_and_restarted(
    clean_pipeline: Settings, start_consumer: Any, background_load: Any
) -> None:
    def inject(consumer: Any, group: str, port: int) -> Any:
        consumer.kill()  # SIGKILL: no drain, no commit
        return start_consumer("f2", group=group, metrics_port=port)

    row = _run_fault(clean_pipeline, start_consumer, background_load, "consumer SIGKILL", inject)
    assert row["lost"] == 0 and row["mismatched"] == 0


def test_connect_worker_killed_and_restarted(
    clean_pipeline: Settings, start_consumer: Any, background_load: Any
) -> None:
    if clean_pipeline.connect_external:
        pytest.skip("Kafka Connect is external: this test kills the local worker")

    def inject(consumer: Any, group: str, port: int) -> None:
        record = process.read_pid(clean_pipeline.state_dir, connect.SERVICE)
        process.stop_pid(record, signal.SIGKILL)
        connect.start(clean_pipeline, clean_pipeline.state_dir / "provision.log")
        connect.register_connector(clean_pipeline)

    row = _run_fault(
        clean_pipeline,
        start_consumer,
        background_load,
        "Connect worker SIGKILL",
        inject,
        events=2000,
    )
    assert row["lost"] == 0 and row["mismatched"] == 0


def test_kafka_broker_stopped_and_restarted(
    clean_pipeline: Settings, start_consumer: Any, background_load: Any
) -> None:
    if clean_pipeline.kafka_external:
        pytest.skip("Kafka is external: this test stops the local broker")

    def inject(consumer: Any, group: str, port: int) -> None:
        kafka.stop(clean_pipeline)
        wait_s(3.0)
        kafka.start(clean_pipeline, clean_pipeline.state_dir / "provision.log")
        connect.register_connector(clean_pipeline)

    row = _run_fault(
        clean_pipeline,
        start_consumer,
        background_load,
        "Kafka broker restart",
        inject,
        events=2000,
    )
    assert row["lost"] == 0 and row["mismatched"] == 0


def test_mongo_unavailable_for_ten_seconds(
    clean_pipeline: Settings, start_consumer: Any, background_load: Any
) -> None:
    if clean_pipeline.mongo_external:
        pytest.skip("MongoDB is external: this test stops the local FerretDB")

    def inject(consumer: Any, group: str, port: int) -> None:
        process.stop_pid(process.read_pid(clean_pipeline.state_dir, ferretdb.SERVICE))
        wait_s(10.0)
        assert consumer.alive(), "the consumer must retry, not die, while MongoDB is away"
        ferretdb.start(clean_pipeline, clean_pipeline.state_dir / "provision.log")

    row = _run_fault(
        clean_pipeline, start_consumer, background_load, "MongoDB away 10 s", inject, events=2000
    )
    assert row["lost"] == 0 and row["mismatched"] == 0


def test_postgres_restarted(
    clean_pipeline: Settings, start_consumer: Any, background_load: Any, pg_conn: Any
) -> None:
    if clean_pipeline.pg_external:
        pytest.skip("PostgreSQL is external: this test restarts the local server")
    group = new_group()
    port = free_port()
    start_consumer("f1", group=group, metrics_port=port)
    wait_consuming(clean_pipeline, group)
    probe = FaultProbe(clean_pipeline, "PostgreSQL restart")
    first = background_load(300, 100)
    first.wait()
    probe.fault(first)
    pg_conn.close()
    postgres.stop(clean_pipeline)
    postgres.start(clean_pipeline)
    probe.restored()
    # Debezium reconnects to its slot by itself; if its task failed meanwhile, `stack up`
    # (register_connector) restarts it, as an operator would.
    connect.register_connector(clean_pipeline)
    from event_processor.source.generator import run_load

    assert first.model is not None
    run_load(clean_pipeline.postgres_dsn(), first.model.plan(300), 100)
    recovered = probe.await_recovery()
    lost, mismatched = verify_ok(clean_pipeline, group)
    row = probe.finish(duplicates_skipped(port), lost, mismatched)
    assert recovered is not None, "no change committed after the restart was applied"
    assert row["lost"] == 0 and row["mismatched"] == 0
