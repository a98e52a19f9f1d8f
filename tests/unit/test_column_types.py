"""Row schemas built from PostgreSQL's catalogue restore values as Debezium's own value
schemas did (time.precision.mode=adaptive): the same converters, for the same types."""

from __future__ import annotations

import base64
import json

import pytest

from event_processor.consumer.column_types import field_schema
from event_processor.consumer.envelope import EnvelopeDecoder, RowDecoder

pytestmark = pytest.mark.unit

CATALOGUE = [  # (column, typname, typmod, element type) as _COLUMNS_SQL returns them
    ("d", "date", -1, None),
    ("ts3", "timestamp", 3, None),
    ("ts6", "timestamp", -1, None),
    ("t0", "time", 0, None),
    ("t6", "time", -1, None),
    ("j", "jsonb", -1, None),
    ("h", "hstore", -1, None),
    ("b", "bytea", -1, None),
    ("da", "_date", -1, "date"),
    ("ja", "_jsonb", -1, "jsonb"),
    ("n", "numeric", -1, None),
    ("tz", "timestamptz", -1, None),
    ("i", "int8", -1, None),
]


def _decoder() -> RowDecoder:
    return RowDecoder({"fields": [field_schema(*row) for row in CATALOGUE]})


def test_catalogue_types_restore_values_like_debeziums_schemas() -> None:
    row = _decoder().decode({
        "d": 19_782, "ts3": 1_709_251_199_999, "ts6": 1_709_251_199_999_999,
        "t0": 47_655_000, "t6": 86_399_999_999, "j": '{"a": [1, 2]}', "h": '{"k": "v"}',
        "b": base64.b64encode(b"\x00\xff").decode(), "da": [0, None],
        "ja": ['{"x": 1}'], "n": "12.50", "tz": "2024-02-29T18:29:59.999999Z", "i": 7,
    })  # fmt: skip
    assert row == {
        "d": "2024-02-29", "ts3": "2024-02-29T23:59:59.999",
        "ts6": "2024-02-29T23:59:59.999999", "t0": "13:14:15.000000",
        "t6": "23:59:59.999999", "j": {"a": [1, 2]}, "h": {"k": "v"}, "b": b"\x00\xff",
        "da": ["1970-01-01", None], "ja": [{"x": 1}], "n": "12.50",
        "tz": "2024-02-29T18:29:59.999999Z", "i": 7,
    }  # fmt: skip


class _Catalogue:
    """Stands in for ColumnTypes: a catalogue whose column changed type once."""

    def __init__(self) -> None:
        self.reads = 0

    def row_schema(self, schema: str, table: str, columns: frozenset[str], refresh: bool = False):  # type: ignore[no-untyped-def]
        self.reads += 1
        typname = "date" if refresh else "jsonb"  # the cache is stale until refreshed
        return {
            "fields": [field_schema("id", "int4", -1, None), field_schema("v", typname, -1, None)]
        }


def test_a_value_that_does_not_fit_its_cached_type_reads_the_catalogue_again() -> None:
    payload = {
        "op": "c", "before": None, "after": {"id": 1, "v": 19_782}, "ts_us": 2,
        "source": {"table": "t", "schema": "public", "ts_us": 1, "lsn": 5, "txId": 9},
    }  # fmt: skip
    catalogue = _Catalogue()
    decoder = EnvelopeDecoder(catalogue)  # type: ignore[arg-type]
    event = decoder.decode(b'{"id": 1}', json.dumps(payload).encode())
    assert event is not None and event.after == {"id": 1, "v": "2024-02-29"}
    assert catalogue.reads == 2
