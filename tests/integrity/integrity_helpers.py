"""Shared steps of the integrity tests: domain rows in bulk, and the verifier's verdict."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from event_processor.settings import Settings
from event_processor.verify import VerifyReport, run_verify

VERIFY_TIMEOUT_S = 90.0


def assert_verified(
    settings: Settings,
    json_path: Path | None = None,
    group: str | None = None,
    timeout_s: float = VERIFY_TIMEOUT_S,
) -> VerifyReport:
    """run_verify must pass; on failure the assertion message is its summary."""
    report = run_verify(settings, timeout_s, json_path, group=group)
    assert report.ok, "\n".join(report.summary_lines(max_lines=40))
    return report


def add_customers(cur: Any, n: int) -> list[int]:
    tag = uuid.uuid4().hex[:6]
    cur.execute(
        """
        INSERT INTO public.customers (email, full_name, phone, address, tier, is_active)
        SELECT 'c' || g || '-' || %s || '@example.com', 'Customer ' || g,
               CASE WHEN g %% 3 = 0 THEN NULL ELSE '+1-555-' || lpad(g::text, 4, '0') END,
               jsonb_build_object('city', 'City ' || (g %% 17), 'zip', lpad(g::text, 5, '0'),
                                  'lines', jsonb_build_array('Street ' || g, g)),
               (ARRAY['bronze', 'silver', 'gold', 'platinum'])[1 + g %% 4], g %% 5 <> 0
        FROM generate_series(1, %s) AS g
        RETURNING id
        """,
        (tag, n),
    )
    return [r[0] for r in cur.fetchall()]


def add_products(cur: Any, n: int) -> list[int]:
    tag = uuid.uuid4().hex[:6]
    cur.execute(
        """
        INSERT INTO public.products (sku, name, price, tags, attributes, in_stock)
        SELECT 'SKU-' || %s || '-' || g, 'Product ' || g, round((g * 1.37)::numeric, 2),
               CASE WHEN g %% 4 = 0 THEN '{}'::text[] ELSE ARRAY['tag' || (g %% 3), 'x'] END,
               CASE WHEN g %% 5 = 0 THEN NULL
                    ELSE jsonb_build_object('weight', g * 0.5, 'color', 'c' || g) END,
               g %% 7 <> 0
        FROM generate_series(1, %s) AS g
        RETURNING id
        """,
        (tag, n),
    )
    return [r[0] for r in cur.fetchall()]


def add_orders(
    cur: Any, customers: list[int], products: list[int], n: int, items: int = 3
) -> list[int]:
    """``n`` orders round-robin over customers, each with ``items`` items and a payment."""
    cur.execute(
        """
        INSERT INTO public.orders (customer_id, status, total, currency, notes)
        SELECT (%s::bigint[])[1 + (g %% cardinality(%s::bigint[]))],
               (ARRAY['placed', 'paid', 'shipped'])[1 + g %% 3],
               round((g * 3.21)::numeric, 2), (ARRAY['EUR', 'USD', 'GBP'])[1 + g %% 3],
               CASE WHEN g %% 2 = 0 THEN NULL ELSE 'note ' || g END
        FROM generate_series(1, %s) AS g
        RETURNING id
        """,
        (customers, customers, n),
    )
    orders = [r[0] for r in cur.fetchall()]
    cur.execute(
        """
        INSERT INTO public.order_items (order_id, product_id, quantity, unit_price)
        SELECT o, (%s::bigint[])[1 + ((o * 7 + i) %% cardinality(%s::bigint[]))], 1 + i,
               round(((o + i) * 0.99)::numeric, 2)
        FROM unnest(%s::bigint[]) AS o, generate_series(1, %s) AS i
        """,
        (products, products, orders, items),
    )
    cur.execute(
        """
        INSERT INTO public.payments (order_id, amount, method, reference)
        SELECT o, round((o * 3.21)::numeric, 2), 'card', gen_random_uuid()
        FROM unnest(%s::bigint[]) AS o
        """,
        (orders,),
    )
    return orders


def load_read_model_offline(
    settings: Settings, table: str, rows: int, timeout_s: float = 600
) -> int:
    """Apply a table's change events to the read model without the live consumer.

    Reads ``<prefix>.public.<table>`` from the default group's committed offsets to its end,
    decodes and projects every event with the consumer's own code (envelope, projection,
    fold) and inserts the resulting documents with ``insert_many``; then commits the
    group's offsets, as the consumer would. Only for tables whose events are all inserts.

    Why: FerretDB 1.24's SQLite backend scans the whole collection for every
    ``{_id: ...}`` lookup (its unique index is on ``sjson->"_id"`` while queries use
    ``sjson->'$._id'``), so the live consumer's per-document upserts cost O(collection):
    fine for the functional tests, hours for 100,000 rows. The verifier is what is timed.
    """
    import time

    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata
    from pymongo import MongoClient

    from event_processor.consumer.column_types import ColumnTypes
    from event_processor.consumer.envelope import EnvelopeDecoder
    from event_processor.consumer.projection import project
    from event_processor.consumer.writer import fold

    topic = f"{settings.topic_prefix}.public.{table}"
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers(),
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=5000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    client: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_uri())
    decoder = EnvelopeDecoder(ColumnTypes(settings.postgres_dsn()))
    deadline = time.monotonic() + timeout_s
    seen = 0
    try:
        while not consumer.partitions_for_topic(topic):
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            consumer.topics()
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        projected = []
        while seen < rows:
            assert time.monotonic() < deadline, f"only {seen} of {rows} events arrived"
            for messages in consumer.poll(timeout_ms=500).values():
                for m in messages:
                    event = decoder.decode(m.key, m.value)
                    if event is None:
                        continue
                    seen += 1
                    projected.extend(project(event))
        coll = client[settings.mongo_database][table]
        docs = []
        for doc_id, folded in fold(projected).get(table, {}).items():
            assert folded.kind == "replace" and folded.doc is not None
            docs.append({"_id": doc_id, **folded.doc})
        for i in range(0, len(docs), 10_000):
            coll.insert_many(docs[i : i + 10_000], ordered=False)
        end = consumer.end_offsets(tps)
    finally:
        consumer.close()
        client.close()
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        admin.alter_group_offsets(
            settings.consumer_group,
            {tp: OffsetAndMetadata(off, "", -1) for tp, off in end.items()},
        )
    finally:
        admin.close()
    return seen
