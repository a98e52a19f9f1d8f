"""Poison events in a real change topic, in the middle of real load: each is dead-lettered
with its reason, everything else is applied, and the verifier passes."""

from __future__ import annotations

from typing import Any

import pytest
from kafka import KafkaProducer

from event_processor.consumer.dlq import DeadLetterReader, header
from event_processor.settings import Settings
from event_processor.testing import free_port
from tests.faults.fault_helpers import new_group, verify_ok, wait_consuming, wait_s

pytestmark = pytest.mark.fault

# The consumer under test gets a 256 KiB limit (EP_MAX_EVENT_BYTES) and the poison a
# 300 KB value. Rather than raising the topic's max.message.bytes (the broker refuses
# values over ~1 MB by default, so a value over the consumer's default 1 MiB cannot
# even be produced): that would change a real change topic's configuration for every
# later test, while the guard under test is the consumer's, whatever its limit. Real
# change events here are a few KB, far below 256 KiB.
LIMIT_BYTES = 256 * 1024
OVERSIZED = b'{"payload": "' + b"x" * 300_000 + b'"}'


def test_poison_events_mid_load_are_dead_lettered_and_the_rest_applied(
    clean_pipeline: Settings, start_consumer: Any, background_load: Any, monkeypatch: Any
) -> None:
    settings = clean_pipeline
    monkeypatch.setenv("EP_MAX_EVENT_BYTES", str(LIMIT_BYTES))
    group = new_group()
    consumer = start_consumer("p1", group=group, metrics_port=free_port())
    wait_consuming(settings, group)
    dlq = DeadLetterReader(settings.kafka_servers(), settings.dlq_topic)
    load = background_load(600, 100)
    wait_s(2.0)  # the poison lands among the load's own events
    topic = f"{settings.topic_prefix}.public.customers"
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers())
    producer.send(topic, key=b'{"id": 1}', value=b"{this is not json")
    producer.send(topic, key=b'{"id": 2}', value=b'{"unexpected": "shape"}')
    producer.send(topic, key=b'{"id": 3}', value=OVERSIZED)
    producer.flush()
    producer.close()
    load.wait()
    verify_ok(settings, group)  # every real change applied, nothing else
    letters = dlq.until_end(consumer_id="p1")
    dlq.close()
    reasons = sorted(header(m, "ep.reason") or "" for m in letters)
    assert len(letters) == 3, reasons
    assert any("not JSON" in r for r in reasons), reasons
    assert any("not a Debezium change event" in r for r in reasons), reasons
    assert any(r.startswith("oversized value: 300015 bytes") for r in reasons), reasons
    assert all(header(m, "ep.source.topic") == topic for m in letters)
    assert consumer.alive()
