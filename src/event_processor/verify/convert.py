"""PostgreSQL values -> the read model's representation, in one place.

The consumer stores what Debezium sends, decoded by ``consumer.envelope`` (value schemas
on, ``decimal.handling.mode=string``, ``interval.handling.mode=string``,
``time.precision.mode=adaptive``). This module turns a value as psycopg2 returns it
(Decimal, datetime with tz, date, dict for json/jsonb, list, memoryview, UUID, ...)
into exactly that representation, so that comparing PostgreSQL with MongoDB is plain
(type-strict) equality. The renderings below were measured on the live stack:

=====================  ================================================================
numeric, money         exact plain string: ``'39.90'``, ``'0.0000000001'`` (no exponent);
                       NaN/±Infinity as ``'NAN'``, ``'POSITIVE_INFINITY'``, ...
real, double           float; NaN/Infinity as the strings ``'NaN'``, ``'Infinity'``;
                       real compared at float32 precision (Java prints floats its own way)
timestamptz(p)         UTC ISO-8601, exactly p fraction digits (none for p=0), ``Z``
timestamp(p)           ISO-8601 without zone: milliseconds for p<=3, else microseconds
time(p)                ``HH:MM:SS.ffffff`` (envelope renders both precisions with micros)
timetz                 UTC, fraction without trailing zeros, ``Z``: ``'04:59:59.5Z'``
date                   ``YYYY-MM-DD``
interval               Debezium ISO form ``P1Y2M3DT4H5M6.78S`` (every component present)
json, jsonb, hstore    sub-documents
bytea                  binary; bit(1) a bool; bit(n)/varbit base64 of little-endian bytes
uuid, inet, enum, ...  their PostgreSQL text
arrays                 lists of converted elements
=====================  ================================================================

A type not listed is read as its PostgreSQL text and marked ``exact=False`` in the plan.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

Converter = Callable[[Any], Any]

UTC = dt.UTC


class Float32:
    """An expected ``real`` value: equal to any float with the same float32 rounding.

    Debezium serialises a float4 through Java's ``Float.toString`` (``1.17549435E-38``)
    while PostgreSQL prints the shortest form (``1.1754944e-38``): the same float32, two
    different doubles.
    """

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value

    def rounded(self) -> float:
        return f32_round(self.value)

    def matches(self, other: Any) -> bool:
        return type(other) is float and f32_round(other) == f32_round(self.value)

    def __repr__(self) -> str:
        return repr(self.value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Float32):
            return self.rounded() == other.rounded()
        return self.matches(other)

    def __hash__(self) -> int:
        return hash(self.rounded())


def f32_round(value: float) -> float:
    """The value rounded to float32 (values beyond float32's range stay as they are)."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return value


# --- scalar renderings (pure functions; unit-tested) ---------------------------------------


def numeric_text(value: Decimal) -> str:
    """Exact plain string, as Debezium's decimal.handling.mode=string renders it
    (special values by the names of Debezium's SpecialValueDecimal)."""
    if value.is_nan():
        return "NAN"
    if value.is_infinite():
        return "POSITIVE_INFINITY" if value > 0 else "NEGATIVE_INFINITY"
    return format(value, "f")


def float_value(value: float) -> float | str:
    """JsonConverter writes non-finite doubles as strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def float32_value(value: float) -> Float32 | str:
    special = float_value(value)
    return special if isinstance(special, str) else Float32(value)


def timestamptz_text(value: dt.datetime, precision: int) -> str:
    """io.debezium.time.ZonedTimestamp: UTC, exactly ``precision`` fraction digits."""
    utc = value.astimezone(UTC).replace(tzinfo=None)
    text = utc.isoformat(timespec="seconds")
    if precision > 0:
        text += "." + f"{utc.microsecond:06d}"[: min(precision, 6)]
    return text + "Z"


def timestamp_text(value: dt.datetime, precision: int) -> str:
    """io.debezium.time.Timestamp (p<=3, milliseconds) or MicroTimestamp, as decoded."""
    spec = "milliseconds" if precision <= 3 else "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec)


def time_text(value: dt.time) -> str:
    """io.debezium.time.Time / MicroTime, as the envelope decodes both."""
    return value.replace(tzinfo=None).isoformat(timespec="microseconds")


def timetz_text(value: dt.time) -> str:
    """io.debezium.time.ZonedTime: the time in UTC, fraction without trailing zeros."""
    offset = value.utcoffset() or dt.timedelta(0)
    seconds = value.hour * 3600 + value.minute * 60 + value.second
    total_us = (seconds * 1_000_000 + value.microsecond) - (offset // dt.timedelta(microseconds=1))
    total_us %= 86_400 * 1_000_000
    secs, micros = divmod(total_us, 1_000_000)
    hh, rest = divmod(secs, 3600)
    mm, ss = divmod(rest, 60)
    text = f"{hh:02d}:{mm:02d}:{ss:02d}"
    if micros:
        text += "." + f"{micros:06d}".rstrip("0")
    return text + "Z"


def date_text(value: dt.date) -> str:
    return value.isoformat()


_ISO_INTERVAL = re.compile(
    r"^P(?:(?P<y>-?\d+)Y)?(?:(?P<mo>-?\d+)M)?(?:(?P<d>-?\d+)D)?"
    r"(?:T(?:(?P<h>-?\d+)H)?(?:(?P<mi>-?\d+)M)?(?:(?P<s>-?\d+(?:\.\d+)?)S)?)?$"
)


def interval_parts(iso: str) -> tuple[int, int, int]:
    """(months, days, microseconds) of an interval printed with IntervalStyle iso_8601."""
    m = _ISO_INTERVAL.match(iso)
    if m is None:
        raise ValueError(f"not an ISO-8601 interval: {iso!r}")
    g = {k: (v or "0") for k, v in m.groupdict().items()}
    months = int(g["y"]) * 12 + int(g["mo"])
    seconds = Decimal(g["s"])
    micros = int(g["h"]) * 3_600_000_000 + int(g["mi"]) * 60_000_000
    micros += int(seconds * 1_000_000)
    return months, int(g["d"]), micros


def _trunc_div(a: int, b: int) -> tuple[int, int]:
    """Java's integer division and remainder (truncating toward zero)."""
    q = abs(a) // abs(b)
    if (a < 0) != (b < 0):
        q = -q
    return q, a - q * b


def interval_text(months: int, days: int, micros: int) -> str:
    """io.debezium.time.Interval.toIsoString: every component, seconds stripped of zeros."""
    years, months = _trunc_div(months, 12)
    hours, rest = _trunc_div(micros, 3_600_000_000)
    minutes, rest = _trunc_div(rest, 60_000_000)
    seconds = (Decimal(rest) / Decimal(1_000_000)).normalize()
    sec_text = format(seconds, "f") if seconds != 0 else "0"
    return f"P{years}Y{months}M{days}DT{hours}H{minutes}M{sec_text}S"


def interval_from_iso(iso: str) -> str:
    return interval_text(*interval_parts(iso))


def bits_value(text: str, length: int) -> bool | str:
    """bit(1) is a boolean; wider bit strings are Debezium's Bits (base64, little-endian)."""
    if length == 1:
        return text == "1"
    number = int(text, 2) if text else 0
    raw = number.to_bytes((number.bit_length() + 7) // 8, "little")
    return base64.b64encode(raw).decode("ascii")


def point_value(text: str) -> dict[str, Any]:
    """io.debezium.data.geometry.Point: x, y and the point's WKB (little-endian)."""
    x_text, y_text = text.strip().strip("()").split(",")
    x, y = float(x_text), float(y_text)
    wkb = struct.pack("<BIdd", 1, 1, x, y)
    return {"x": x, "y": y, "wkb": base64.b64encode(wkb).decode("ascii"), "srid": None}


def bytes_value(value: Any) -> bytes:
    return bytes(value)


def text_value(value: Any) -> str:
    return str(value)


def json_text_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# --- per-column plans --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A column's type as the catalogue describes it (domains resolved to their base)."""

    name: str  # pg_type.typname of the base type, e.g. "int8", "_text"
    typmod: int = -1
    is_enum: bool = False
    elem: str | None = None  # element typname for arrays
    elem_is_enum: bool = False
    display: str = ""  # format_type(), for reports


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How to select one column and turn each value into the read model's form."""

    name: str
    sql: str  # select-list expression
    convert: Converter | None  # None: the value is already in its final form
    float32: bool = False  # compare floats at float32 precision (real, real[])
    exact: bool = True  # False: type not modelled, compared as PostgreSQL text
    display: str = ""


# Types whose Debezium value is their PostgreSQL text, byte for byte.
TEXT_TYPES = frozenset(
    {
        "text", "varchar", "bpchar", "name", "char", "uuid", "inet", "cidr", "macaddr",
        "macaddr8", "xml", "tsvector", "tsquery", "citext", "ltree",
        "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange",
    }
)  # fmt: skip
IDENTITY_TYPES = frozenset({"bool", "int2", "int4", "int8", "oid", "json", "jsonb"})
# Element types psycopg2 itself parses into Python values inside arrays.
NATIVE_ARRAY_ELEMENTS = frozenset(
    {
        "bool", "int2", "int4", "int8", "oid", "float4", "float8", "numeric", "date",
        "time", "timetz", "timestamp", "timestamptz", "bytea",
    }
)  # fmt: skip


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _precision(typmod: int) -> int:
    return typmod if 0 <= typmod <= 6 else 6


def scalar_converter(type_name: str, typmod: int, is_enum: bool = False) -> Converter | None:
    """The converter for a non-array value of this type (None: keep it as it is).

    Returns a function for values as psycopg2 returns them for the plan's SQL expression
    (text for the types selected as ``::text``).
    """
    if type_name in IDENTITY_TYPES:
        return None
    if type_name in TEXT_TYPES or is_enum:
        return text_value if type_name == "uuid" else None
    if type_name == "float8":
        return float_value
    if type_name == "float4":
        return float32_value
    if type_name in ("numeric", "money"):
        return numeric_text
    if type_name == "timestamptz":
        p = _precision(typmod)
        return lambda v: timestamptz_text(v, p)
    if type_name == "timestamp":
        p = _precision(typmod)
        return lambda v: timestamp_text(v, p)
    if type_name == "time":
        return time_text
    if type_name == "timetz":
        return timetz_text
    if type_name == "date":
        return date_text
    if type_name == "interval":
        return interval_from_iso
    if type_name == "bytea":
        return bytes_value
    if type_name in ("bit", "varbit"):
        length = typmod if type_name == "bit" and typmod > 0 else 0
        return lambda v: bits_value(v, length)
    if type_name == "point":
        return point_value
    return None


def _array_of(conv: Converter) -> Converter:
    def convert(values: Any) -> Any:
        if isinstance(values, str):  # psycopg2 left it unparsed: not expected here
            return values
        return [None if v is None else (convert(v) if isinstance(v, list) else conv(v))
                for v in values]  # fmt: skip

    return convert


def plan_column(name: str, ctype: ColumnType) -> ColumnPlan:
    """Select expression and converter for one column of a table."""
    col = _quote(name)
    t = ctype.name
    display = ctype.display or t
    if ctype.elem is not None:  # an array
        elem = ctype.elem
        f32 = elem == "float4"
        if elem == "money":
            return ColumnPlan(name, f"{col}::numeric[]", _array_of(numeric_text), display=display)
        if elem in ("json", "jsonb"):
            return ColumnPlan(name, f"{col}::text[]", _array_of(json_text_value), display=display)
        if elem == "interval":
            return ColumnPlan(name, f"{col}::text[]", _array_of(interval_from_iso),
                              display=display)  # fmt: skip
        if elem in ("bit", "varbit"):
            conv = scalar_converter(elem, ctype.typmod)
            assert conv is not None
            return ColumnPlan(name, f"{col}::text[]", _array_of(conv), display=display)
        if elem in NATIVE_ARRAY_ELEMENTS:
            conv = scalar_converter(elem, ctype.typmod)
            return ColumnPlan(
                name, col, None if conv is None else _array_of(conv), float32=f32, display=display
            )
        exact = elem in TEXT_TYPES or ctype.elem_is_enum
        return ColumnPlan(name, f"{col}::text[]", None, exact=exact, display=display)
    if t == "money":
        return ColumnPlan(name, f"{col}::numeric", numeric_text, display=display)
    if t == "interval":
        return ColumnPlan(name, f"{col}::text", interval_from_iso, display=display)
    if t in ("point",):
        return ColumnPlan(name, f"{col}::text", point_value, display=display)
    if t == "hstore":
        return ColumnPlan(name, f"hstore_to_json({col})", None, display=display)
    known = (
        t in IDENTITY_TYPES
        or t in TEXT_TYPES
        or ctype.is_enum
        or t in ("float4", "float8", "numeric", "timestamptz", "timestamp", "time", "timetz",
                 "date", "bytea", "bit", "varbit")
    )  # fmt: skip
    if not known:
        return ColumnPlan(name, f"{col}::text", None, exact=False, display=display)
    sql = f"{col}::text" if t in TEXT_TYPES and t not in ("text", "varchar", "bpchar") else col
    return ColumnPlan(
        name,
        sql,
        scalar_converter(t, ctype.typmod, ctype.is_enum),
        float32=(t == "float4"),
        display=display,
    )


def row_converter(plans: list[ColumnPlan]) -> Callable[[tuple[Any, ...]], dict[str, Any]]:
    """A fast function: one result tuple (in plan order) -> {column: read-model value}."""
    names = [p.name for p in plans]
    convs = [(i, p.convert) for i, p in enumerate(plans) if p.convert is not None]

    def convert(row: tuple[Any, ...]) -> dict[str, Any]:
        values = list(row)
        for i, conv in convs:
            v = values[i]
            if v is not None:
                values[i] = conv(v)
        return dict(zip(names, values, strict=True))

    return convert
