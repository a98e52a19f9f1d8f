"""PostgreSQL values -> the read model's representation (renderings measured on the stack)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from event_processor.consumer.envelope import EnvelopeDecoder
from event_processor.verify.convert import (
    ColumnType,
    Float32,
    bits_value,
    float32_value,
    float_value,
    interval_from_iso,
    interval_parts,
    interval_text,
    numeric_text,
    plan_column,
    point_value,
    row_converter,
    time_text,
    timestamp_text,
    timestamptz_text,
    timetz_text,
)
from event_processor.verify.diff import same

pytestmark = pytest.mark.unit

UTC = dt.UTC
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("39.90"), "39.90"),
        (Decimal("1E-10"), "0.0000000001"),
        (Decimal("0.0"), "0.0"),
        (Decimal("-0.000001"), "-0.000001"),
        (Decimal("100000000000000000000"), "100000000000000000000"),
        (Decimal("1.0000"), "1.0000"),
        (Decimal("NaN"), "NAN"),
        (Decimal("Infinity"), "POSITIVE_INFINITY"),
        (Decimal("-Infinity"), "NEGATIVE_INFINITY"),
    ],
)
def test_numeric_is_an_exact_plain_string(value: Decimal, text: str) -> None:
    assert numeric_text(value) == text


def test_floats_and_their_special_values() -> None:
    assert float_value(0.1) == 0.1
    assert float_value(float("nan")) == "NaN"
    assert float_value(float("inf")) == "Infinity"
    assert float_value(float("-inf")) == "-Infinity"
    assert float32_value(float("-inf")) == "-Infinity"
    # Java prints the float32 1.1754944e-38 as 1.17549435E-38: a different double.
    f = float32_value(1.1754944e-38)
    assert isinstance(f, Float32)
    assert f.matches(1.17549435e-38) and not f.matches(1.1754945e-38 * 2)
    assert same(f, 1.17549435e-38) and not same(f, "1.1754944e-38")
    assert same(Float32(-0.0), 0.0)


@pytest.mark.parametrize(
    ("value", "precision", "text"),
    [
        (dt.datetime(2024, 2, 29, 23, 59, 59, 999999, IST), 6, "2024-02-29T18:29:59.999999Z"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), 6, "2024-01-02T03:04:05.000000Z"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), 0, "2024-01-02T03:04:05Z"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 500000, UTC), 3, "2024-01-02T03:04:05.500Z"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 123400, UTC), 4, "2024-01-02T03:04:05.1234Z"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), 1, "2024-01-02T03:04:05.0Z"),
        (dt.datetime(1, 1, 1, tzinfo=UTC), 4, "0001-01-01T00:00:00.0000Z"),
    ],
)
def test_timestamptz_has_exactly_the_column_precision(
    value: dt.datetime, precision: int, text: str
) -> None:
    assert timestamptz_text(value, precision) == text


def test_timestamp_time_and_timetz() -> None:
    assert timestamp_text(dt.datetime(2024, 1, 2, 3, 4, 5, 100000), 1) == "2024-01-02T03:04:05.100"
    assert timestamp_text(dt.datetime(2024, 1, 2, 3, 4, 5), 6) == "2024-01-02T03:04:05.000000"
    assert timestamp_text(dt.datetime(1, 1, 1), 6) == "0001-01-01T00:00:00.000000"
    assert time_text(dt.time(3, 4, 5)) == "03:04:05.000000"
    assert time_text(dt.time(23, 59, 59, 999999)) == "23:59:59.999999"
    tz_m5 = dt.timezone(dt.timedelta(hours=-5))
    assert timetz_text(dt.time(23, 59, 59, 999999, tz_m5)) == "04:59:59.999999Z"
    assert timetz_text(dt.time(10, 15, tzinfo=UTC)) == "10:15:00Z"
    assert timetz_text(dt.time(3, 4, 5, 500000, dt.timezone(-dt.timedelta(hours=1.5)))) == (
        "04:34:05.5Z"
    )
    assert timetz_text(dt.time(0, 0, tzinfo=dt.timezone(dt.timedelta(hours=14)))) == "10:00:00Z"


@pytest.mark.parametrize(
    ("iso", "debezium"),
    [
        ("P1Y2M3DT4H5M6.78S", "P1Y2M3DT4H5M6.78S"),
        ("P-1DT-1.5S", "P0Y0M-1DT0H0M-1.5S"),
        ("PT0S", "P0Y0M0DT0H0M0S"),
        ("PT0.000001S", "P0Y0M0DT0H0M0.000001S"),
        ("P-1Y-2M3DT-4H-5M-6.000001S", "P-1Y-2M3DT-4H-5M-6.000001S"),
        ("PT101H1M59.5S", "P0Y0M0DT101H1M59.5S"),
        ("P1M1D", "P0Y1M1DT0H0M0S"),
        ("P1Y1M", "P1Y1M0DT0H0M0S"),
        ("P-1Y-1MT-1S", "P-1Y-1M0DT0H0M-1S"),
    ],
)
def test_interval_in_debezium_form(iso: str, debezium: str) -> None:
    assert interval_from_iso(iso) == debezium


def test_interval_parts_and_java_truncation() -> None:
    assert interval_parts("P1Y2M3DT4H5M6.78S") == (14, 3, 14_706_780_000)
    assert interval_text(-13, 0, -1_000_000) == "P-1Y-1M0DT0H0M-1S"
    with pytest.raises(ValueError):
        interval_parts("1 day")


def test_bits_and_points() -> None:
    assert bits_value("1", 1) is True and bits_value("0", 1) is False
    assert bits_value("1010101010", 10) == "qgI="  # little-endian, as Debezium's Bits
    assert bits_value("101", 0) == "BQ=="
    assert bits_value("0000000000", 10) == ""
    assert point_value("(1,2)") == {
        "x": 1.0, "y": 2.0, "wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "srid": None,
    }  # fmt: skip


def _plan(name: str, typname: str, typmod: int = -1, **kw: Any) -> Any:
    return plan_column(name, ColumnType(typname, typmod, **kw))


def test_plans_choose_sql_and_converters() -> None:
    assert _plan("id", "int8").convert is None and _plan("id", "int8").sql == '"id"'
    assert _plan("m", "money").sql == '"m"::numeric'
    assert _plan("iv", "interval").sql == '"iv"::text'
    assert _plan("u", "uuid").sql == '"u"::text'
    assert _plan("r", "float4").float32 and _plan("ra", "_float4", elem="float4").float32
    assert _plan("ja", "_jsonb", elem="jsonb").sql == '"ja"::text[]'
    assert _plan("ea", "_mood", elem="mood", elem_is_enum=True).exact
    weird = _plan("g", "polygon", display="polygon")
    assert weird.sql == '"g"::text' and not weird.exact
    assert _plan('we"ird', "text").sql == '"we""ird"'


def test_row_converter_turns_psycopg2_values_into_the_read_model() -> None:
    plans = [
        _plan("id", "int8"),
        _plan("price", "numeric", 786438),
        _plan("at", "timestamptz"),
        _plan("day", "date"),
        _plan("doc", "jsonb"),
        _plan("tags", "_text", elem="text"),
        _plan("prices", "_numeric", elem="numeric"),
        _plan("blob", "bytea"),
        _plan("ref", "uuid"),
        _plan("span", "interval"),
        _plan("ja", "_jsonb", elem="jsonb"),
        _plan("stamps", "_timestamp", elem="timestamp"),
    ]
    convert = row_converter(plans)
    row = (
        7, Decimal("39.90"), dt.datetime(2024, 2, 29, 23, 59, 59, 999999, IST),
        dt.date(2024, 2, 29), {"a": [1, None]}, ["x", None], [Decimal("1.50"), None],
        memoryview(b"\x00\xff"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "P1DT2H3M4S",
        ['{"x": 1}', None], [dt.datetime(2024, 1, 2, 3, 4, 5, 500000)],
    )  # fmt: skip
    assert convert(row) == {
        "id": 7,
        "price": "39.90",
        "at": "2024-02-29T18:29:59.999999Z",
        "day": "2024-02-29",
        "doc": {"a": [1, None]},
        "tags": ["x", None],
        "prices": ["1.50", None],
        "blob": b"\x00\xff",
        "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "span": "P0Y0M1DT2H3M4S",
        "ja": [{"x": 1}, None],
        "stamps": ["2024-01-02T03:04:05.500000"],
    }
    assert convert((None,) * len(plans)) == {p.name: None for p in plans}


FIXTURES = Path(__file__).parents[1] / "fixtures" / "debezium" / "events.jsonl"


def test_conversion_matches_what_the_consumer_decodes_from_real_events() -> None:
    """The recorded type-zoo event, decoded by the consumer's envelope code, equals the
    PostgreSQL row of the recorder's INSERT converted by the verifier."""
    decoder = EnvelopeDecoder()
    after = None
    for line in FIXTURES.read_text().splitlines():
        r = json.loads(line)
        if r["topic"].endswith("fixture_type_zoo") and r["value"]:
            import base64

            m = SimpleNamespace(key=base64.b64decode(r["key"]), value=base64.b64decode(r["value"]))
            event = decoder.decode(m.key, m.value)
            if event is not None and event.op == "c" and event.after and event.after["seq"] == 1:
                after = event.after
    assert after is not None
    cols = [
        ("region", ColumnType("text")), ("seq", ColumnType("int4")),
        ("amount", ColumnType("numeric", 1310730)), ("big", ColumnType("int8")),
        ("small", ColumnType("int2")), ("ratio", ColumnType("float8")),
        ("flag", ColumnType("bool")), ("label", ColumnType("text")),
        ("at_tz", ColumnType("timestamptz")), ("at_local", ColumnType("timestamp")),
        ("day", ColumnType("date")), ("clock", ColumnType("time")),
        ("doc", ColumnType("jsonb")), ("tags", ColumnType("_text", elem="text")),
        ("nums", ColumnType("_int4", elem="int4")), ("blob", ColumnType("bytea")),
        ("ident", ColumnType("uuid")), ("span", ColumnType("interval")),
    ]  # fmt: skip
    convert = row_converter([plan_column(n, t) for n, t in cols])
    # What psycopg2 returns for the recorder's row (scripts/record_fixtures.py).
    pg_row = (
        "eu", 1, Decimal("12345678901234.123456"), 9007199254740993, -7, 0.1, True,
        "zoë 東京 \U0001f680", dt.datetime(2024, 2, 29, 23, 59, 59, 999999, IST),
        dt.datetime(2024, 1, 2, 3, 4, 5, 1), dt.date(1999, 12, 31),
        dt.time(13, 14, 15, 161718), {"nested": {"list": [1, "two", None]}, "n": 1.5},
        ["a", None, "c"], [1, 2, 3], memoryview(b"\x00\xff\x10"),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "P1DT2H3M4S",
    )  # fmt: skip
    expected = convert(pg_row)
    assert same(expected, after), [k for k in expected if not same(expected[k], after[k])]
