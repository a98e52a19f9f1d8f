"""Kill or stop each real process mid-load; after recovery the verifier must pass."""

from __future__ import annotations

import signal
import socket
import urllib.request
from typing import Any

import pytest

from event_processor.pytest_plugin import group_lag, wait_until
from event_processor.settings import Settings
from event_processor.stack import connect, ferretdb, kafka, postgres, process
from event_processor.verify import run_verify
from tests.faults.fault_helpers import FaultProbe, new_group, wait_s

pytestmark = pytest.mark.fault

VERIFY_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _duplicates(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ep_duplicates_skipped_total"))  # fmt: skip


def _verify(settings: Settings, group: str) -> tuple[int, int]:
    report = run_verify(settings, VERIFY_TIMEOUT_S, group=group)
    assert report.ok, "\n".join(report.summary_lines(max_lines=40))
    data = report.to_dict()
    return int(data.get("missing", 0) or 0), int(data.get("mismatched", 0) or 0)


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
    port = _free_port()
    consumer = start_consumer("f1", group=group, metrics_port=port)
    # Caught up first (a new group skips the history), so duplicates count only replays.
    assert wait_until(lambda: group_lag(settings, group) == 0, 60, 0.5)
    probe = FaultProbe(settings, name)
    load = background_load(events, rate)
    wait_s(2.0)  # let the load run before the fault hits
    probe.fault(load)
    consumer = inject(consumer, group, port) or consumer
    probe.restored()
    load.wait()
    lost, mismatched = _verify(settings, group)
    duplicates = _duplicates(port)
    return probe.finish(duplicates, lost, mismatched)


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
    port = _free_port()
    start_consumer("f1", group=group, metrics_port=port)
    assert wait_until(lambda: group_lag(clean_pipeline, group) == 0, 60, 0.5)
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
    lost, mismatched = _verify(clean_pipeline, group)
    row = probe.finish(_duplicates(port), lost, mismatched)
    assert row["lost"] == 0 and row["mismatched"] == 0
