"""Tables outside schema ``public`` keep their schema in the read model's name, so a
``sales.customers`` never lands in (or reshapes) the domain ``customers`` collection."""

from __future__ import annotations

import json

import pytest

from event_processor.consumer.envelope import EnvelopeDecoder, qualified_name
from event_processor.consumer.projection import project

pytestmark = pytest.mark.unit


def _value(schema: str, table: str) -> bytes:
    return json.dumps({
        "op": "c", "before": None, "after": {"id": 7, "v": 1}, "ts_ms": 1,
        "source": {"schema": schema, "table": table, "lsn": 100, "txId": 5, "ts_ms": 1,
                   "sequence": '["90","100"]'},
    }).encode()  # fmt: skip


def test_qualified_name() -> None:
    assert qualified_name("public", "orders") == "orders"
    assert qualified_name("sales", "orders") == "sales.orders"
    assert qualified_name("Sales Dept", "Order Lines") == "Sales Dept.Order Lines"


def test_a_table_of_another_schema_is_generic_under_its_qualified_name() -> None:
    decoder = EnvelopeDecoder()
    public = decoder.decode(b'{"id": 7}', _value("public", "customers"))
    other = decoder.decode(b'{"id": 7}', _value("sales", "customers"))
    assert public is not None and other is not None
    assert public.table == "customers" and other.table == "sales.customers"
    (domain,) = project(public)
    (generic,) = project(other)
    assert domain.collection == "customers"
    assert generic.collection == "sales.customers"
    assert generic.write.doc is not None and "_lsn" in generic.write.doc
