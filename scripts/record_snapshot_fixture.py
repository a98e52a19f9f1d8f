"""Record a real snapshot event (op "r") for the unit-test fixtures.

A throw-away connector (own slot, own topic prefix) snapshots one row of `customers`;
its event is appended to tests/fixtures/debezium/events.jsonl, then the connector, its
slot and its publication are removed. Usage (stack up):
    .venv/bin/python scripts/record_snapshot_fixture.py
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request

import psycopg2
from kafka import KafkaConsumer

from event_processor.settings import PROJECT_ROOT, get_settings
from event_processor.source.schema import apply_schema
from event_processor.stack.connect import _http, connector_config

OUT = PROJECT_ROOT / "tests" / "fixtures" / "debezium" / "events.jsonl"

NAME, PREFIX, SLOT = "ep-fixture-snapshot", "fx", "fx_slot"


def main() -> None:
    settings = get_settings()
    conn = psycopg2.connect(settings.postgres_dsn())
    apply_schema(conn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DELETE FROM customers WHERE id = 9100")
        cur.execute(
            "INSERT INTO customers (id, email, full_name, address, tier) OVERRIDING SYSTEM VALUE "
            "VALUES (9100, 'snap@example.com', 'Snap Shot', '{\"city\": \"Porto\"}', 'bronze')"
        )
    config = connector_config(settings)
    config.update({
        "topic.prefix": PREFIX, "slot.name": SLOT, "publication.name": f"{SLOT}_pub",
        "publication.autocreate.mode": "filtered", "table.include.list": "public.customers",
        "snapshot.mode": "initial",
    })  # fmt: skip
    for key in [k for k in config if k.startswith(("transforms", "predicates"))]:
        del config[key]
    del config["message.key.columns"]
    base = f"{settings.connect_endpoint()}/connectors/{NAME}"
    _http("PUT", f"{base}/config", config, timeout=30)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers(), group_id=None,
                             auto_offset_reset="earliest", metadata_max_age_ms=500)  # fmt: skip
    consumer.subscribe(pattern=rf"^{PREFIX}\.public\.customers$")
    record = None
    deadline = time.monotonic() + 60
    while record is None and time.monotonic() < deadline:
        for msgs in consumer.poll(timeout_ms=300).values():
            for m in msgs:
                if m.value and json.loads(m.value)["payload"]["after"]["id"] == 9100:
                    record = m
    consumer.close()
    req = urllib.request.Request(base, method="DELETE")
    urllib.request.urlopen(req, timeout=30).close()
    time.sleep(2)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_drop_replication_slot(%s) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND NOT active", (SLOT, SLOT))  # fmt: skip
        cur.execute(f"DROP PUBLICATION IF EXISTS {SLOT}_pub")
        cur.execute("DELETE FROM customers WHERE id = 9100")
    if record is None:
        raise SystemExit("no snapshot event arrived within 60 s")
    payload = json.loads(record.value)["payload"]
    assert payload["op"] == "r", payload["op"]
    with OUT.open("a") as f:
        f.write(json.dumps({
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "timestamp": record.timestamp, "timestamp_type": record.timestamp_type,
            "key": base64.b64encode(record.key).decode() if record.key else None,
            "value": base64.b64encode(record.value).decode(),
        }) + "\n")  # fmt: skip
    print(f"appended a snapshot (op r) event of customers/9100 to {OUT}")


if __name__ == "__main__":
    main()
