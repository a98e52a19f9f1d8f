"""The quix-streams race peer (race.quix_sink) as a real process against the live stack:
Debezium-shaped change events on a Kafka topic of its own land in MongoDB as our consumer
writes them (string _id, the row's columns, updates replaced, deletes gone)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from event_processor.settings import PROJECT_ROOT, Settings
from event_processor.testing import free_port, wait_until

pytestmark = pytest.mark.integration

MODULE = "event_processor.race.quix_sink"
COLLECTION = "race_events"


def _event(op: str, row_id: int, payload: str = "", lsn: int = 0) -> tuple[bytes, bytes]:
    """(key, value) of one change event exactly as the race topic carries it: Debezium
    3.6 PostgreSQL, JSON without schema envelope (recorded from ep.public.race_events)."""
    row = {"id": row_id, "payload": payload, "created": "2026-11-20T10:00:00.000000Z"}
    ts_ms = 1796471360150 + lsn
    source = {"version": "3.6.1.Final", "connector": "postgresql", "name": "ep",
              "ts_ms": ts_ms, "snapshot": "true" if op == "r" else "false", "db": "shop",
              "sequence": f'["{lsn}","{lsn + 8}"]', "ts_us": ts_ms * 1000,
              "ts_ns": ts_ms * 1_000_000, "schema": "public", "table": COLLECTION,
              "txId": 380000 + lsn, "lsn": lsn, "xmin": None, "origin": None,
              "origin_lsn": None}  # fmt: skip
    value = {
        # A delete's before has the key (replica identity default), the rest defaulted.
        "before": {"id": row_id, "payload": "", "created": "1970-01-01T00:00:00.000000Z"}
        if op == "d"
        else None,
        "after": row if op in ("c", "r", "u") else None,
        "source": source,
        "transaction": {
            "id": f"{380000 + lsn}:{lsn}",
            "total_order": 1,
            "data_collection_order": 1,
        },
        "op": op,
        "ts_ms": ts_ms + 13,
        "ts_us": (ts_ms + 13) * 1000,
        "ts_ns": (ts_ms + 13) * 1_000_000,
    }
    key = json.dumps({"id": row_id}, separators=(",", ":")).encode()
    return key, json.dumps(value, separators=(",", ":")).encode()


def _doc(row_id: int, payload: str) -> dict[str, Any]:
    """What our consumer writes for the row: its key as a string _id, its columns."""
    return {"_id": str(row_id), "id": row_id, "payload": payload,
            "created": "2026-11-20T10:00:00.000000Z"}  # fmt: skip


def _produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers(), acks="all")
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


@pytest.fixture
def quix_topic(ep_stack: Settings) -> Iterator[str]:
    """A topic of this test's own (1 partition), deleted afterwards."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    name = f"itest-quix-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=ep_stack.kafka_servers())
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    try:
        yield name
    finally:
        admin.delete_topics([name])
        admin.close()


@pytest.fixture
def quix_db(ep_stack: Settings) -> Iterator[Any]:
    """A database of this test's own, dropped afterwards."""
    from pymongo import MongoClient

    client: Any = MongoClient(ep_stack.mongodb_uri())
    name = f"itest_quix_{uuid.uuid4().hex[:10]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture
def quix_group(ep_stack: Settings) -> Iterator[str]:
    """A fresh consumer group (starts at the earliest offset), deleted afterwards."""
    from kafka import KafkaAdminClient

    name = f"itest-quix-{uuid.uuid4().hex[:8]}"
    yield name
    admin = KafkaAdminClient(bootstrap_servers=ep_stack.kafka_servers())
    try:
        admin.delete_groups([name])
    except Exception:  # never joined, or already gone with its topic
        pass
    finally:
        admin.close()


@pytest.fixture
def start_sink(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: the sink as a process (stderr to a log); killed by PID if still alive."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"quix-sink-{len(started)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", MODULE, *args], stdout=log,
                                stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                                env={**os.environ, **(env or {})})  # fmt: skip
        log.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _log(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("quix-sink-*")))


def _docs(db: Any) -> list[dict[str, Any]]:
    return sorted(db[COLLECTION].find({}), key=lambda d: d["_id"])


def test_changes_land_as_our_consumer_writes_them_and_sigterm_exits_0(
    ep_stack: Settings,
    quix_topic: str,
    quix_db: Any,
    quix_group: str,
    start_sink: Any,
    tmp_path: Path,
) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    # A backlog before the sink starts: creates, a snapshot read, an update, and a delete
    # followed by its tombstone (value null), as Debezium writes them.
    d3_key, d3 = _event("d", 3, lsn=6)
    _produce(ep_stack, quix_topic, [
        _event("c", 1, "one", lsn=1), _event("c", 2, "two", lsn=2),
        _event("c", 3, "three", lsn=3), _event("r", 4, "four", lsn=4),
        _event("u", 2, "two, updated", lsn=5), (d3_key, d3), (d3_key, None),
    ])  # fmt: skip
    sink = start_sink("--topic", quix_topic, "--database", quix_db.name,
                      "--collection", COLLECTION, "--group", quix_group)  # fmt: skip
    want = [_doc(1, "one"), _doc(2, "two, updated"), _doc(4, "four")]
    ok = wait_until(lambda: _docs(quix_db) == want or sink.poll() is not None, 60, 0.1)
    assert ok and sink.poll() is None, (_docs(quix_db), _log(tmp_path))
    assert _docs(quix_db) == want

    # While it runs: a delete of a document written by an earlier batch, and a create.
    d1_key, d1 = _event("d", 1, lsn=7)
    _produce(ep_stack, quix_topic, [(d1_key, d1), (d1_key, None), _event("c", 5, "five", lsn=8)])
    want = [_doc(2, "two, updated"), _doc(4, "four"), _doc(5, "five")]
    assert wait_until(lambda: _docs(quix_db) == want, 30, 0.1), (_docs(quix_db), _log(tmp_path))

    sink.send_signal(signal.SIGTERM)
    assert sink.wait(30) == 0, _log(tmp_path)
    assert _docs(quix_db) == want

    # It committed everything it applied (the tombstones too) before exiting.
    tp = TopicPartition(quix_topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=ep_stack.kafka_servers(), group_id=None)
    admin = KafkaAdminClient(bootstrap_servers=ep_stack.kafka_servers())
    try:
        end = consumer.end_offsets([tp])[tp]
        committed = admin.list_group_offsets({quix_group: None})[quix_group][tp].offset
    finally:
        consumer.close()
        admin.close()
    assert (committed, end) == (10, 10)


def _one_line_error(proc: subprocess.Popen[bytes], tmp_path: Path) -> str:
    assert proc.wait(60) != 0
    lines = [line for line in _log(tmp_path).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("quix-sink: "), lines
    return lines[0]


def test_bad_option_is_one_line(start_sink: Any, tmp_path: Path) -> None:
    proc = start_sink("--topic", "t", "--database", "d", "--collection", "c", "--group", "g",
                      "--commit-interval", "soon")  # fmt: skip
    assert "--commit-interval" in _one_line_error(proc, tmp_path)
    assert proc.returncode == 2


def test_unreachable_kafka_is_one_line(start_sink: Any, tmp_path: Path) -> None:
    proc = start_sink("--topic", "t", "--database", "d", "--collection", "c", "--group", "g",
                      env={"EP_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})  # fmt: skip
    assert "Kafka" in _one_line_error(proc, tmp_path)


def test_missing_topic_is_one_line_and_not_created(
    ep_stack: Settings, start_sink: Any, tmp_path: Path
) -> None:
    from kafka import KafkaConsumer

    topic = f"itest-quix-missing-{uuid.uuid4().hex[:10]}"
    proc = start_sink("--topic", topic, "--database", "d", "--collection", "c", "--group", "g")
    assert "does not exist" in _one_line_error(proc, tmp_path)
    consumer = KafkaConsumer(bootstrap_servers=ep_stack.kafka_servers(), group_id=None)
    try:
        assert topic not in consumer.topics()  # the check asked no broker to create it
    finally:
        consumer.close()


def test_unreachable_mongodb_is_one_line(quix_topic: str, start_sink: Any, tmp_path: Path) -> None:
    proc = start_sink("--topic", quix_topic, "--database", "d", "--collection", "c",
                      "--group", "g", env={"EP_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/"})  # fmt: skip
    assert "MongoDB" in _one_line_error(proc, tmp_path)
