"""The consumer's decode -> project -> fold path on real recorded Debezium events."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from event_processor.consumer.envelope import ChangeEvent, EnvelopeDecoder, MalformedEvent
from event_processor.consumer.projection import doc_id, keyless_count, project, row_hash_id
from event_processor.consumer.writer import Folded, fold

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parents[1] / "fixtures" / "debezium" / "events.jsonl"


def _records() -> list[Any]:
    out = []
    for line in FIXTURES.read_text().splitlines():
        r = json.loads(line)
        out.append(SimpleNamespace(
            topic=r["topic"], partition=r["partition"], offset=r["offset"],
            timestamp=r["timestamp"], timestamp_type=r["timestamp_type"],
            key=base64.b64decode(r["key"]) if r["key"] else None,
            value=base64.b64decode(r["value"]) if r["value"] else None,
        ))  # fmt: skip
    return out


def _events(table: str | None = None) -> list[ChangeEvent]:
    decoder = EnvelopeDecoder()
    events = [e for r in _records() if (e := decoder.decode(r.key, r.value)) is not None]
    return [e for e in events if table is None or e.table == table]


def test_every_op_decodes_with_commit_and_processing_stamps() -> None:
    events = _events()
    assert {e.op for e in events} >= {"c", "u", "d"}
    for e in events:
        assert e.source_ts_us > 1_600_000_000_000_000  # microseconds since the epoch
        assert e.debezium_ts_us >= e.source_ts_us
        assert e.tx_id > 0 and e.lsn > 0


def test_tombstones_decode_to_nothing() -> None:
    tombstones = [r for r in _records() if r.value is None]
    assert tombstones, "the fixture should contain Debezium's delete tombstones"
    assert all(EnvelopeDecoder().decode(r.key, r.value) is None for r in tombstones)


def test_positions_increase_in_stream_order_per_partition() -> None:
    decoder = EnvelopeDecoder()
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for r in _records():
        e = decoder.decode(r.key, r.value)
        if e is not None:
            by_partition.setdefault((r.topic, r.partition), []).append(e.position)
    for positions in by_partition.values():
        assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_column_types_are_restored_faithfully() -> None:
    row = next(
        e.after
        for e in _events("fixture_type_zoo")
        if e.op == "c" and e.after and e.after["seq"] == 1
    )
    assert row is not None
    assert row["amount"] == "12345678901234.123456"  # exact numeric, as text
    assert row["big"] == 9007199254740993  # beyond float precision, still exact
    assert row["small"] == -7 and row["ratio"] == 0.1 and row["flag"] is True
    assert row["label"] == "zoë 東京 \U0001f680"
    assert row["at_tz"] == "2024-02-29T18:29:59.999999Z"  # converted to UTC, µs kept
    assert row["at_local"] == "2024-01-02T03:04:05.000001"
    assert row["day"] == "1999-12-31"
    assert row["clock"] == "13:14:15.161718"
    assert row["doc"] == {"nested": {"list": [1, "two", None]}, "n": 1.5}
    assert row["tags"] == ["a", None, "c"] and row["nums"] == [1, 2, 3]
    assert row["blob"] == b"\x00\xff\x10"
    assert row["ident"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert isinstance(row["span"], str) and row["span"].startswith("P")


def test_nulls_stay_null() -> None:
    row = next(
        e.after
        for e in _events("fixture_type_zoo")
        if e.op == "c" and e.after and e.after["seq"] == 2
    )
    assert row is not None
    assert all(row[c] is None for c in row if c not in ("region", "seq"))


def test_generic_table_with_composite_key_lands_once_per_key() -> None:
    writes = fold(p for e in _events("fixture_type_zoo") for p in project(e))
    docs = writes["fixture_type_zoo"]
    assert set(docs) == {doc_id(["eu", 1]), doc_id(["eu", 2])}
    assert docs[doc_id(["eu", 2])].kind == "delete"
    kept = docs[doc_id(["eu", 1])]
    assert kept.kind == "replace" and kept.doc is not None
    assert kept.doc["label"] == "changed" and kept.doc["amount"] == "-0.000001"


def test_keyless_rows_are_counted_by_content() -> None:
    writes = fold(p for e in _events("fixture_keyless") for p in project(e))
    docs = writes["fixture_keyless"]
    dup = docs[row_hash_id({"note": "dup", "n": 1})]
    single = docs[row_hash_id({"note": "single", "n": 2})]
    assert dup.kind == "update" and keyless_count({"_ops": _ops(dup)}) == 2
    assert keyless_count({"_ops": _ops(single)}) == 0  # inserted, then deleted


def _ops(f: Folded) -> dict[str, int]:
    return {k.split(".", 1)[1]: v for k, v in f.sets.items() if k.startswith("_ops.")}


def test_order_aggregate_embeds_items_and_payments_then_deletes() -> None:
    events = _events()
    order_events = [e for e in events if e.table in ("orders", "order_items", "payments")]
    placed = [e for e in order_events if e.op == "c"]
    folded = fold(p for e in placed for p in project(e))["orders"]["9001"]
    assert folded.kind == "update" and folded.upsert
    assert folded.sets["customer_id"] == "9001" and folded.sets["total"] == "39.98"
    assert folded.sets["items.9001"]["product_id"] == "9001"
    assert folded.sets["items.9001"]["quantity"] == 2
    assert folded.sets["payments.9001"]["method"] == "card"
    # The whole history, folded: the order was deleted (with cascades) at the end.
    everything = fold(p for e in order_events for p in project(e))["orders"]["9001"]
    assert everything.kind == "delete"


def test_a_delete_then_recreate_in_one_batch_becomes_a_replace() -> None:
    events = [e for e in _events() if e.table in ("orders", "order_items")]
    deletes = [e for e in events if e.op == "d"]
    creates = [e for e in events if e.op == "c"]
    folded = fold(p for e in deletes + creates for p in project(e))["orders"]["9001"]
    assert folded.kind == "replace" and folded.doc is not None
    assert folded.doc["items"]["9001"]["quantity"] == 2 and folded.doc["status"] == "placed"


def test_customer_references_and_replace() -> None:
    writes = fold(p for e in _events("customers") if e.op in ("c", "u") for p in project(e))
    doc = writes["customers"]["9001"].doc
    assert doc is not None
    assert doc["phone"] == "+351 21 000 0000" and doc["address"] == {
        "city": "Lisboa",
        "zip": "1000",
    }


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"op": "c"}', "missing op or source"),
        (b'{"op": "x", "source": {"table": "t"}}', "missing op or source"),
        (
            b'{"op": "c", "source": {"table": "t", "ts_us": 1, "lsn": 1}, "ts_us": 2, "after": null}',
            "without an after",
        ),
        (
            b'{"op": "d", "source": {"table": "t", "ts_us": 1, "lsn": 1}, "ts_us": 2, "before": null}',
            "delete without",
        ),
        (
            b'{"op": "c", "source": {"table": "t", "ts_us": "soon", "lsn": 1}, "ts_us": 2, "after": {}}',
            "bad source",
        ),
    ],
)
def test_malformed_events_are_rejected_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        EnvelopeDecoder().decode(b'{"id": 1}', value)


def test_decode_and_project_benchmark(benchmark: Any) -> None:
    records = [r for r in _records() if r.value is not None]

    def run() -> int:
        decoder = EnvelopeDecoder()
        n = 0
        for r in records:
            event = decoder.decode(r.key, r.value)
            if event is not None:
                n += len(project(event))
        return n

    assert benchmark(run) > 0


def _envelope(op: str, before: Any, after: Any, lsn: int, schema_fields: list[Any]) -> bytes:
    row = {"type": "struct", "fields": schema_fields, "optional": True, "name": "ep.public.t.Value"}
    return json.dumps({
        "schema": {"type": "struct", "fields": [dict(row, field="before"), dict(row, field="after")]},
        "payload": {
            "op": op, "before": before, "after": after, "ts_us": 2,
            "source": {"table": "t", "ts_us": 1, "lsn": lsn, "txId": 9,
                       "sequence": json.dumps([str(lsn), str(lsn)])},
        },
    }).encode()  # fmt: skip


FIELDS = [
    {"type": "int32", "optional": False, "field": "id"},
    {"type": "int32", "optional": True, "field": "small"},
    {"type": "string", "optional": True, "field": "big"},
    {
        "type": "string",
        "optional": True,
        "name": "io.debezium.data.Json",
        "version": 1,
        "field": "doc",
    },
    {"type": "array", "items": {"type": "string"}, "optional": True, "field": "arr"},
    {"type": "bytes", "optional": True, "field": "b"},
]


def test_unchanged_toasted_columns_keep_their_stored_values() -> None:
    placeholder = "__debezium_unavailable_value"
    value = _envelope(
        "u", None,
        {"id": 1, "small": 2, "big": placeholder, "doc": placeholder, "arr": [placeholder],
         "b": "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="},
        100, FIELDS,
    )  # fmt: skip
    event = EnvelopeDecoder().decode(b'{"id": 1}', value)
    assert event is not None
    writes = fold(project(event))["t"]["1"]
    # Only what the event carries is written: no placeholder reaches the document.
    assert writes.kind == "update"
    assert writes.sets == {"id": 1, "small": 2, "_lsn": 100}


def test_a_primary_key_update_is_not_mistaken_for_a_duplicate() -> None:
    # Debezium: delete of the old key and create of the new one, at the same LSN.
    delete = EnvelopeDecoder().decode(b'{"id": 1}', _envelope("d", {"id": 1}, None, 200, FIELDS))
    create = EnvelopeDecoder().decode(
        b'{"id": 101}', _envelope("c", None, {"id": 101, "small": 1}, 200, FIELDS)
    )
    assert delete is not None and create is not None
    assert create.position > delete.position


def test_snapshot_reads_project_like_creates() -> None:
    snapshot = [e for e in _events("customers") if e.op == "r"]
    assert snapshot, "the fixture should contain a recorded snapshot (op r) event"
    event = snapshot[0]
    assert event.after is not None and event.after["full_name"] == "Snap Shot"
    folded = fold(project(event))["customers"][str(event.after["id"])]
    assert folded.kind == "replace" and folded.doc is not None
    assert folded.doc["address"] == {"city": "Porto"}


@pytest.mark.parametrize(
    "key", [0, 7, -3, 2**31, 2**63 - 1, 2**64 + 5, -(2**70), True, False, 1.5, "x", None]
)
def test_document_ids_of_keys_never_change_shape(key: Any) -> None:
    """A read model written by an earlier version must keep its _ids: the integer fast
    path has to give exactly what the JSON rule gives (bool stays true/false)."""
    expected = key if isinstance(key, str) else json.dumps(key)
    if isinstance(key, bool):
        expected = "true" if key else "false"
    assert doc_id([key]) == expected
    assert doc_id([key, "eu"]) == f"{expected}|eu"
