"""The embedded stack: a committed row change arrives on Kafka as a Debezium event."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer

from event_processor.settings import Settings
from event_processor.stack import manager, process

pytestmark = pytest.mark.integration


def _read_events(settings: Settings, table: str, count: int, timeout_s: float = 30) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        metadata_max_age_ms=300,
        fetch_max_wait_ms=50,
    )
    topic = f"{settings.topic_prefix}.public.{table}"
    consumer.subscribe(pattern=f"^{topic.replace('.', '[.]')}$")
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < count and time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=200).values():
                out.extend(m for m in msgs if m.value is not None)
    finally:
        consumer.close()
    return out


def test_insert_update_delete_arrive_as_change_events(ep_stack: Settings, pg_conn: Any) -> None:
    # A table created after the stack came up is captured as well.
    table = f"stack_probe_{uuid.uuid4().hex[:8]}"
    with pg_conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, amount numeric(10,2))")
        cur.execute(f"INSERT INTO {table} VALUES (1, 'zoë', 12.50)")
        cur.execute(f"UPDATE {table} SET name = 'zoe' WHERE id = 1")
        cur.execute(f"DELETE FROM {table} WHERE id = 1")
    messages = _read_events(ep_stack, table, 3)
    assert len(messages) == 3, f"expected 3 change events on Kafka, got {len(messages)}"
    payloads = [json.loads(m.value) for m in messages]
    # Values carry no Kafka Connect schema (the consumer reads types from the catalogue).
    assert all("schema" not in p and "payload" not in p for p in payloads)
    assert [p["op"] for p in payloads] == ["c", "u", "d"]
    assert payloads[0]["after"] == {"id": 1, "name": "zoë", "amount": "12.50"}
    assert payloads[1]["after"]["name"] == "zoe"
    assert payloads[2]["before"]["id"] == 1 and payloads[2]["after"] is None
    for m, p in zip(messages, payloads, strict=True):
        commit_us = p["source"]["ts_us"]
        assert isinstance(commit_us, int) and commit_us > 0
        # Broker append time (LogAppendTime) minus commit time: on Kafka within 2 s.
        assert m.timestamp_type == 1, "change topics must use LogAppendTime"
        assert m.timestamp * 1000 - commit_us < 2_000_000


def test_up_twice_is_harmless(ep_stack: Settings) -> None:
    before = {s: process.read_pid(ep_stack.state_dir, s) for s in manager.SERVICES}
    started = time.monotonic()
    report = manager.up(ep_stack)
    assert time.monotonic() - started < 15
    assert all("already running" in line or "external" in line or "connector" in line
               for _, line in report.lines)  # fmt: skip
    after = {s: process.read_pid(ep_stack.state_dir, s) for s in manager.SERVICES}
    assert before == after
    assert manager.status(ep_stack)["ok"] is True


def test_down_leaves_no_process_and_up_restores(ep_stack: Settings) -> None:
    if ep_stack.pg_external or ep_stack.kafka_external or ep_stack.connect_external:
        pytest.skip("the stack is external: nothing local to stop")
    records = {s: process.read_pid(ep_stack.state_dir, s) for s in manager.SERVICES}
    assert all(process.is_ours_alive(r) for r in records.values())
    manager.down(ep_stack)
    assert not any(process.is_ours_alive(r) for r in records.values())
    manager.up(ep_stack)
    assert manager.status(ep_stack)["ok"] is True


def test_status_reports_what_each_service_costs_now(ep_stack: Settings) -> None:
    cost = manager.status(ep_stack, cost_window_s=1.0)["cost"]
    assert {"kafka", "connect (debezium)", "ferretdb", "source postgres"} <= set(cost["groups"])
    assert all(g["rss_mb"] > 0 for g in cost["groups"].values())
    assert 0 <= cost["host_busy_pct"] <= 100 and cost["window_s"] >= 1.0
    # An idle Connect worker polls Debezium every 10 ms: it uses some CPU, never none.
    assert cost["groups"]["connect (debezium)"]["share_of_a_core_pct"] > 0
