"""Record real Debezium change events from the running stack as unit-test fixtures.

Usage: .venv/bin/python scripts/record_fixtures.py  (the stack must be up)
Writes tests/fixtures/debezium/events.jsonl: one captured Kafka record per line.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import psycopg2
from kafka import KafkaConsumer

from event_processor.settings import PROJECT_ROOT, get_settings
from event_processor.source.schema import apply_schema

OUT = PROJECT_ROOT / "tests" / "fixtures" / "debezium" / "events.jsonl"

GENERIC_DDL = """
CREATE TABLE IF NOT EXISTS fixture_type_zoo (
    region text, seq int, amount numeric(20,6), big bigint, small smallint, ratio float8,
    flag boolean, label text, at_tz timestamptz, at_local timestamp, day date, clock time,
    doc jsonb, tags text[], nums int[], blob bytea, ident uuid, span interval,
    PRIMARY KEY (region, seq));
CREATE TABLE IF NOT EXISTS fixture_keyless (note text, n int);
ALTER TABLE fixture_keyless REPLICA IDENTITY FULL;
"""

STATEMENTS = [
    "INSERT INTO customers (id, email, full_name, phone, address, tier) OVERRIDING SYSTEM VALUE "
    "VALUES (9001, 'ana@example.com', 'Ana Núñez', NULL, '{\"city\": \"Lisboa\", \"zip\": \"1000\"}', 'gold')",
    "INSERT INTO products (id, sku, name, price, tags, attributes) OVERRIDING SYSTEM VALUE "
    "VALUES (9001, 'SKU-9001', 'Teapot ☕', 19.99, '{kitchen,gift}', '{\"color\": \"blue\"}')",
    "BEGIN; INSERT INTO orders (id, customer_id, total, currency) OVERRIDING SYSTEM VALUE VALUES (9001, 9001, 39.98, 'EUR');"
    " INSERT INTO order_items (id, order_id, product_id, quantity, unit_price) OVERRIDING SYSTEM VALUE VALUES (9001, 9001, 9001, 2, 19.99); COMMIT",
    "INSERT INTO payments (id, order_id, amount, method, reference) OVERRIDING SYSTEM VALUE "
    "VALUES (9001, 9001, 39.98, 'card', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')",
    "UPDATE orders SET status = 'paid', updated_at = now() WHERE id = 9001",
    "UPDATE customers SET phone = '+351 21 000 0000', updated_at = now() WHERE id = 9001",
    "DELETE FROM orders WHERE id = 9001",
    "DELETE FROM customers WHERE id = 9001",
    "DELETE FROM products WHERE id = 9001",
    "INSERT INTO fixture_type_zoo VALUES ('eu', 1, 12345678901234.123456, 9007199254740993, -7, 0.1, true,"
    " 'zoë 東京 \U0001f680', '2024-02-29 23:59:59.999999+05:30', '2024-01-02 03:04:05.000001', '1999-12-31',"
    " '13:14:15.161718', '{\"nested\": {\"list\": [1, \"two\", null]}, \"n\": 1.5}', '{a,NULL,c}', '{1,2,3}',"
    " '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:03:04')",
    "INSERT INTO fixture_type_zoo (region, seq) VALUES ('eu', 2)",
    "UPDATE fixture_type_zoo SET label = 'changed', amount = -0.000001 WHERE region = 'eu' AND seq = 1",
    "DELETE FROM fixture_type_zoo WHERE region = 'eu' AND seq = 2",
    "INSERT INTO fixture_keyless VALUES ('dup', 1), ('dup', 1), ('single', 2)",
    "DELETE FROM fixture_keyless WHERE note = 'single'",
]


def main() -> None:
    settings = get_settings()
    conn = psycopg2.connect(settings.postgres_dsn())
    apply_schema(conn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(GENERIC_DDL)
        cur.execute("DELETE FROM fixture_type_zoo; DELETE FROM fixture_keyless;")
        cur.execute(
            "DELETE FROM orders WHERE id = 9001; DELETE FROM customers WHERE id = 9001;"
            " DELETE FROM products WHERE id = 9001"
        )
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers(),
        group_id=None,
        enable_auto_commit=False,
        metadata_max_age_ms=500,
        auto_offset_reset="earliest",
    )
    consumer.subscribe(pattern=settings.change_topic_pattern())
    started_us = time.time_ns() // 1000
    with conn.cursor() as cur:
        for sql in STATEMENTS:
            cur.execute(sql)
    records = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for msgs in consumer.poll(timeout_ms=300).values():
            for m in msgs:
                if (
                    m.value is not None
                    and json.loads(m.value)["payload"]["source"]["ts_us"] < started_us
                ):
                    continue
                if m.value is None and m.timestamp * 1000 < started_us:
                    continue
                records.append({
                    "topic": m.topic, "partition": m.partition, "offset": m.offset,
                    "timestamp": m.timestamp, "timestamp_type": m.timestamp_type,
                    "key": base64.b64encode(m.key).decode() if m.key is not None else None,
                    "value": base64.b64encode(m.value).decode() if m.value is not None else None,
                })  # fmt: skip
    records.sort(key=lambda r: (json.loads(base64.b64decode(r["value"]))["payload"]["source"]["lsn"]
                                if r["value"] else 0, r["topic"], r["offset"]))  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with Path(OUT).open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    print(f"recorded {len(records)} records into {OUT}")


if __name__ == "__main__":
    main()
