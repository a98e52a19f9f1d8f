"""The event processor through the live stack: PostgreSQL -> Debezium -> Kafka -> MongoDB."""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from event_processor.consumer.dlq import DeadLetterReader, header
from event_processor.consumer.timings import TimingCollector
from event_processor.metrics.timing import TimingRecord
from event_processor.settings import Settings
from event_processor.source.schema import apply_schema
from event_processor.testing import group_assignment, group_lag, insert_customer, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def base_id(pg_conn: Any) -> int:
    """A fresh id range per test, so tests share the stack without sharing rows."""
    apply_schema(pg_conn)
    return random.randint(10**9, 2 * 10**9)


def _group() -> str:
    return f"it-{uuid.uuid4().hex[:8]}"


def _collect(
    collector: TimingCollector, tx_ids: set[int], want: int, timeout_s: float = 20
) -> list[TimingRecord]:
    got: list[TimingRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got.extend(r for r in collector.poll(200) if r.tx_id in tx_ids)
    return got


def test_rows_arrive_correct_with_six_timestamps(
    ep_stack: Settings, pg_conn: Any, mongo_db: Any, start_consumer: Any, base_id: int
) -> None:
    collector = TimingCollector(ep_stack.kafka_servers(), ep_stack.timings_topic)
    collector.seek(collector.mark_end())
    start_consumer("c1", group=_group())
    cid, pid, oid = base_id, base_id, base_id
    tx_ids = set()
    with pg_conn.cursor() as cur:
        tx_ids.add(insert_customer(cur, cid))
        cur.execute(
            "INSERT INTO products (id, sku, name, price, tags) OVERRIDING SYSTEM VALUE "
            "VALUES (%s, %s, 'Lamp', 25.50, '{home}') RETURNING txid_current() %% 4294967296",
            (pid, f"SKU-{pid}"),
        )
        tx_ids.add(int(cur.fetchone()[0]))
    pg_conn.autocommit = False
    with pg_conn.cursor() as cur:
        cur.execute(
            "INSERT INTO orders (id, customer_id, total, currency) OVERRIDING SYSTEM VALUE "
            "VALUES (%s, %s, 51.00, 'EUR') RETURNING txid_current() %% 4294967296",
            (oid, cid),
        )
        tx_ids.add(int(cur.fetchone()[0]))
        cur.execute(
            "INSERT INTO order_items (id, order_id, product_id, quantity, unit_price) "
            "OVERRIDING SYSTEM VALUE VALUES (%s, %s, %s, 2, 25.50)",
            (base_id, oid, pid),
        )
    pg_conn.commit()
    pg_conn.autocommit = True

    def order_doc() -> Any:
        return mongo_db.orders.find_one({"_id": str(oid)})

    assert wait_until(lambda: order_doc() is not None and "items" in order_doc(), 20)
    doc = order_doc()
    assert doc["customer_id"] == str(cid) and doc["total"] == "51.00" and doc["status"] == "placed"
    assert doc["items"][str(base_id)]["product_id"] == str(pid)
    assert doc["items"][str(base_id)]["quantity"] == 2
    assert wait_until(lambda: mongo_db.customers.find_one({"_id": str(cid)}) is not None, 20)
    customer = mongo_db.customers.find_one({"_id": str(cid)})
    assert customer["full_name"] == "Ada" and customer["address"] == {"city": "Oslo"}

    # Six stamps per event, collected here, in another process than the consumer.
    records = _collect(collector, tx_ids, 4)
    collector.close()
    assert len(records) == 4
    for r in records:
        assert r.t0_us <= r.t1_us <= r.t3_us <= r.t4_us <= r.t5_us
        assert r.t2_us >= r.t1_us - 1000  # the broker's stamp has millisecond resolution
        assert r.consumer == "c1"
        assert r.t5_us - r.t0_us < 5_000_000

    # Updates and deletes follow.
    with pg_conn.cursor() as cur:
        cur.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (oid,))
        cur.execute("UPDATE customers SET full_name = 'Ada L.' WHERE id = %s", (cid,))
    assert wait_until(lambda: order_doc()["status"] == "paid", 20)
    assert wait_until(
        lambda: mongo_db.customers.find_one({"_id": str(cid)})["full_name"] == "Ada L.", 20
    )
    with pg_conn.cursor() as cur:
        cur.execute("DELETE FROM orders WHERE id = %s", (oid,))
        cur.execute("DELETE FROM products WHERE id = %s", (pid,))
    assert wait_until(lambda: order_doc() is None, 20)
    assert wait_until(lambda: mongo_db.products.find_one({"_id": str(pid)}) is None, 20)


def _dump(mongo_db: Any) -> dict[str, list[Any]]:
    return {
        name: sorted(mongo_db[name].find({}), key=lambda d: str(d["_id"]))
        for name in ("customers", "products", "orders")
    }


def test_replay_from_the_beginning_changes_nothing(
    ep_stack: Settings, pg_conn: Any, mongo_db: Any, start_consumer: Any, base_id: int
) -> None:
    group = _group()
    first = start_consumer("c1", group=group)
    with pg_conn.cursor() as cur:
        for i in range(20):
            insert_customer(cur, base_id + i)
        cur.execute("UPDATE customers SET full_name = 'renamed' WHERE id = %s", (base_id,))
        cur.execute("DELETE FROM customers WHERE id = %s", (base_id + 1,))
    assert wait_until(lambda: (d := mongo_db.customers.find_one({"_id": str(base_id)})) is not None
                      and d["full_name"] == "renamed", 20)  # fmt: skip
    assert wait_until(lambda: mongo_db.customers.find_one({"_id": str(base_id + 1)}) is None, 20)
    first.stop()
    before = _dump(mongo_db)
    # A new group starts at the beginning of every change topic: a full replay.
    replay_group = _group()
    replay = start_consumer("replay", group=replay_group, at_end=False)
    assert wait_until(lambda: group_lag(ep_stack, replay_group) == 0, 60, 0.5)
    assert replay.stop() == 0
    assert _dump(mongo_db) == before


def test_poison_message_is_dead_lettered_and_the_rest_applied(
    ep_stack: Settings, pg_conn: Any, mongo_db: Any, start_consumer: Any, base_id: int
) -> None:
    dlq = KafkaConsumer(bootstrap_servers=ep_stack.kafka_servers(), group_id=None,
                        auto_offset_reset="latest", enable_auto_commit=False)  # fmt: skip
    dlq.subscribe([ep_stack.dlq_topic])
    dlq.poll(timeout_ms=500)
    for tp in dlq.assignment():
        dlq.position(tp)
    start_consumer("c1", group=_group())
    topic = f"{ep_stack.topic_prefix}.public.customers"
    producer = KafkaProducer(bootstrap_servers=ep_stack.kafka_servers())
    producer.send(topic, key=b'{"id": 1}', value=b"{this is not json")
    producer.send(topic, key=b'{"id": 2}', value=b'{"unexpected": "shape"}')
    producer.flush()
    producer.close()
    with pg_conn.cursor() as cur:
        insert_customer(cur, base_id, "after-poison")
    assert wait_until(lambda: mongo_db.customers.find_one({"_id": str(base_id)}) is not None, 20)
    letters: list[Any] = []
    deadline = time.monotonic() + 20
    while len(letters) < 2 and time.monotonic() < deadline:
        for msgs in dlq.poll(timeout_ms=200).values():
            letters.extend(msgs)
    dlq.close()
    reasons = sorted(dict(m.headers)["ep.reason"].decode() for m in letters)
    assert len(letters) == 2, reasons
    assert any("not JSON" in r for r in reasons)
    assert any("not a Debezium change event" in r for r in reasons)
    assert all(dict(m.headers)["ep.source.topic"].decode() == topic for m in letters)


def test_document_the_store_refuses_is_dead_lettered_and_the_batch_applied(
    ep_stack: Settings, pg_conn: Any, mongo_db: Any, start_consumer: Any, base_id: int
) -> None:
    """FerretDB 1.24 refuses nested arrays: an insert gets a write error (code 2), a
    replace a reply without nModified (KeyError in pymongo). Neither may stop the
    consumer: the events that produced such a document are dead-lettered, the rest of
    the batch applied, and the consumer goes on."""
    dlq = DeadLetterReader(ep_stack.kafka_servers(), ep_stack.dlq_topic)
    consumer = start_consumer("c1", group=_group())
    address = {"city": "Oslo", "geo": [[59.9, 10.7], [60.4, 5.3]]}
    nested = json.dumps(address)
    good, bad, after = base_id, base_id + 1, base_id + 2
    with pg_conn.cursor() as cur:
        insert_customer(cur, good, "good")
    assert wait_until(lambda: mongo_db.customers.find_one({"_id": str(good)}) is not None, 20)
    pg_conn.autocommit = False
    # One transaction, which may still reach the consumer in one batch or split over two:
    # every change of it that names a nested array is refused either way (the bad row
    # from its very insert, so no batch boundary lets a first version of it through).
    with pg_conn.cursor() as cur:
        insert_customer(cur, bad, "refused on insert", address)
        cur.execute("UPDATE customers SET address = %s WHERE id = %s", (nested, good))
        cur.execute("UPDATE customers SET address = %s WHERE id = %s", (nested, bad))
        insert_customer(cur, after, "applied beside them")
    pg_conn.commit()
    pg_conn.autocommit = True
    assert wait_until(lambda: mongo_db.customers.find_one({"_id": str(after)}) is not None, 30)
    letters = dlq.read(want=3, timeout_s=20)
    dlq.close()
    reasons = [header(m, "ep.reason") or "" for m in letters]
    assert len(letters) == 3, reasons
    assert all("nested arrays" in r or "nModified" in r for r in reasons), reasons
    assert consumer.alive(), "a refused document must not stop the consumer"
    assert mongo_db.customers.find_one({"_id": str(bad)}) is None
    kept = mongo_db.customers.find_one({"_id": str(good)})
    assert kept is not None and kept["address"] == {"city": "Oslo"}
    # Offsets advanced past the batch: a later change is applied too.
    with pg_conn.cursor() as cur:
        insert_customer(cur, base_id + 3, "later")
    assert wait_until(
        lambda: mongo_db.customers.find_one({"_id": str(base_id + 3)}) is not None, 20
    )


def test_two_consumer_processes_share_the_work(
    ep_stack: Settings, pg_conn: Any, mongo_db: Any, start_consumer: Any, base_id: int
) -> None:
    """Two members of one group split the change topics between them (one partition per
    topic: a table's changes stay in commit order with one owner), and every change is
    applied once, by the owner of its topic."""
    from event_processor.perf.harness import ensure_topics

    ensure_topics(ep_stack)  # the workload's change topics exist, also on a fresh stack
    collector = TimingCollector(ep_stack.kafka_servers(), ep_stack.timings_topic)
    collector.seek(collector.mark_end())
    group = _group()
    start_consumer("share-a", group=group)
    start_consumer("share-b", group=group)
    topic = f"{ep_stack.topic_prefix}.public.customers"
    members: dict[str, set[str]] = {}

    def both_assigned() -> bool:
        members.clear()
        members.update(group_assignment(ep_stack, group))
        return (
            len(members) == 2
            and all(members.values())
            and sum(topic in topics for topics in members.values()) == 1
        )

    assert wait_until(both_assigned, 30, 0.5), group_assignment(ep_stack, group)
    owner = next(m for m, topics in members.items() if topic in topics)
    tx_ids = set()
    n = 60
    with pg_conn.cursor() as cur:
        for i in range(n):
            tx_ids.add(insert_customer(cur, base_id + i))
    ids = [str(base_id + i) for i in range(n)]
    assert wait_until(lambda: all(mongo_db.customers.find_one({"_id": i}) for i in ids), 30)
    records = _collect(collector, tx_ids, n)
    collector.close()
    assert len({r.tx_id for r in records}) == n
    assert {r.consumer for r in records} == {owner}
