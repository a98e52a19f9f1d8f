"""Knobs read back from the running components' own answers."""

from __future__ import annotations

import pytest

from event_processor.perf.running_config import (
    connector_knobs,
    consumer_knobs,
    jvm_heap,
    worker_property,
)

pytestmark = pytest.mark.unit


def test_connector_knobs_come_from_the_registered_config() -> None:
    config = {"poll.interval.ms": "10", "max.batch.size": "2048", "producer.override.acks": "all",
              "connector.class": "io.debezium.connector.postgresql.PostgresConnector"}  # fmt: skip
    assert connector_knobs(config) == {
        "poll_interval_ms": 10,
        "max_batch_size": 2048,
        "producer_acks": "all",
    }
    assert connector_knobs(None) == {}


def test_consumer_knobs_are_what_the_consumer_reported() -> None:
    assert consumer_knobs(
        {"consumer_fetch_max_wait_ms": "100", "mongo_write_concurrency": "2"}
    ) == {
        "consumer_fetch_max_wait_ms": 100,
        "mongo_write_concurrency": 2,
    }


def test_the_jvm_obeys_its_last_xmx() -> None:
    cmdline = b"/usr/bin/java -Xms512m -Xmx512m -XX:+UseG1GC -Xmx768m -cp x kafka.Kafka"
    assert jvm_heap(cmdline) == "768m"
    assert jvm_heap(b"/usr/bin/java -cp x") is None


def test_worker_property_reads_the_file_connect_was_started_with() -> None:
    props = "bootstrap.servers=127.0.0.1:59092\noffset.flush.interval.ms = 1000\n#x=1\n"
    assert worker_property(props, "offset.flush.interval.ms") == "1000"
    assert worker_property(props, "missing") is None
