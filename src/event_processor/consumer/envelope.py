"""Decoding of Debezium change events (JsonConverter, with or without value schemas).

With value schemas every column arrives with its semantic type, so values can be restored
faithfully: exact numerics stay exact (as strings), timestamps keep their microseconds
and zone (ISO-8601 strings), json becomes sub-documents, bytea becomes binary.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import orjson

from event_processor.consumer.column_types import ColumnTypes

# Kafka's record timestamp type for broker append time.
LOG_APPEND_TIME = 1
EPOCH_DATE = dt.date(1970, 1, 1)


_SCHEMA_KEY = b'{"schema":'
_PAYLOAD_KEY = b',"payload":'
_SCHEMA_CACHE_SIZE = 4096  # distinct value schemas kept (tables x schema versions)

PLACEHOLDER = "__debezium_unavailable_value"
# The placeholder as Debezium renders it for text and json, and for bytea (base64).
_PLACEHOLDERS = frozenset({PLACEHOLDER, "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="})


class _Unavailable:
    """A column whose value this change event does not carry (unchanged TOAST)."""

    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Any = _Unavailable()


class MalformedEvent(ValueError):
    """The message is not a Debezium change event we can apply: dead-letter it."""


def qualified_name(schema: str, table: str) -> str:
    """How the read model names a source table: ``table`` in schema ``public``, else
    ``schema.table`` (the same table name in two schemas are two collections, and only
    ``public``'s domain tables get the read shapes of ``consumer.projection``)."""
    return table if schema == "public" else f"{schema}.{table}"


@dataclass(slots=True)
class ChangeEvent:
    """One decoded row change."""

    # The source table as the read model names it (``qualified_name``): ``orders``,
    # ``sales.orders``; a partitioned table's changes carry the parent's name.
    table: str
    op: str  # c, r, u, d, t
    key: dict[str, Any] | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    tx_id: int
    lsn: int
    # (commit-ordered sequence, lsn, order within the transaction): never decreasing
    # per partition, but not unique: every row of one multi-row WAL record (COPY)
    # carries the record's LSN, and snapshot rows share one position. The third part
    # is Debezium's transaction.total_order where the event has one (unique within
    # the transaction), else an op rank (a primary-key update arrives as a delete and
    # a create at the same LSN: the rank orders them).
    position: tuple[int, int, int]
    source_ts_us: int  # T0: commit time
    debezium_ts_us: int  # T1: processed by Debezium
    # transaction.total_order (1-based), 0 when Debezium sent no transaction block
    # (snapshot reads, or a connector without provide.transaction.metadata).
    tx_order: int = 0
    # Set by the consumer loop for an event that ties with the one before it on its
    # partition and has no tx_order: "<partition>_<ordinal>" (keyless rows need it).
    tie: str = ""
    # The source table's own schema and name (``table`` is the read model's name).
    schema: str = "public"
    source_table: str = ""


def _date(days: int) -> str:
    return (EPOCH_DATE + dt.timedelta(days=days)).isoformat()


def _micro_timestamp(us: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)).isoformat(
        timespec="microseconds"
    )


def _milli_timestamp(ms: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)).isoformat(
        timespec="milliseconds"
    )


def _micro_time(us: int) -> str:
    return (
        (dt.datetime.min + dt.timedelta(microseconds=us)).time().isoformat(timespec="microseconds")
    )


def _json(value: str) -> Any:
    return json.loads(value)


def _bytes(value: str) -> bytes:
    return base64.b64decode(value)


# Debezium semantic type name -> converter of the JSON value.
_BY_NAME: dict[str, Any] = {
    "io.debezium.time.Date": _date,
    "io.debezium.time.MicroTimestamp": _micro_timestamp,
    "io.debezium.time.Timestamp": _milli_timestamp,
    "io.debezium.time.NanoTimestamp": lambda ns: _micro_timestamp(ns // 1000),
    "io.debezium.time.MicroTime": _micro_time,
    "io.debezium.time.Time": lambda ms: _micro_time(ms * 1000),
    "io.debezium.data.Json": _json,
}


def _field_converter(schema: dict[str, Any]) -> Any:
    name = schema.get("name")
    if name in _BY_NAME:
        return _BY_NAME[name]
    ftype = schema.get("type")
    if ftype == "bytes" and name is None:
        return _bytes
    if ftype == "array":
        inner = _field_converter(schema.get("items", {}))
        if inner is None:
            return None
        return lambda items: [None if v is None else inner(v) for v in items]
    return None


class RowDecoder:
    """Converts a row struct using its schema; cached per distinct schema."""

    __slots__ = ("converters",)

    def __init__(self, row_schema: dict[str, Any] | None) -> None:
        self.converters: dict[str, Any] = {}
        if row_schema:
            for field in row_schema.get("fields", []):
                conv = _field_converter(field)
                if conv is not None:
                    self.converters[field["field"]] = conv

    def decode(self, row: dict[str, Any] | None, toast: bool = False) -> dict[str, Any] | None:
        """Typed values; with ``toast`` (updates), unchanged TOASTed columns that
        Debezium could not read become UNAVAILABLE instead of its placeholder text."""
        if row is None:
            return None
        out = dict(row)
        if toast:
            for name, value in row.items():
                if (isinstance(value, str) and value in _PLACEHOLDERS) or value == [PLACEHOLDER]:
                    out[name] = UNAVAILABLE
        for name, conv in self.converters.items():
            value = out.get(name)
            if value is not None and value is not UNAVAILABLE:
                try:
                    out[name] = conv(value)
                except (ValueError, TypeError, OverflowError) as exc:
                    raise MalformedEvent(f"column {name}: {exc!r}") from None
        return out


class EnvelopeDecoder:
    """Decodes message bytes into ChangeEvents; caches row decoders by schema identity."""

    def __init__(self, types: ColumnTypes | None = None) -> None:
        self._decoders: dict[tuple[Any, ...], RowDecoder] = {}
        self._by_schema_bytes: dict[bytes, RowDecoder] = {}
        # Where events carry no schema: column types from the source's catalogue.
        self.types = types
        # (schema, table) -> the catalogue's row schema and the decoder built from it.
        self._typed: dict[tuple[str, str], tuple[dict[str, Any], RowDecoder]] = {}

    def _row_decoder(self, schema: dict[str, Any] | None) -> RowDecoder:
        if schema is None:
            return _PLAIN
        fields = schema.get("fields", [])
        row_schema = next((f for f in fields if f.get("field") == "after"), None)
        # The row schema's name and its fields' names and types identify it.
        ident: tuple[Any, ...] = ()
        if row_schema:
            fields = row_schema.get("fields", [])
            ident = (
                row_schema.get("name"),
                *((f.get("field"), f.get("name"), f.get("type")) for f in fields),
            )
        decoder = self._decoders.get(ident)
        if decoder is None:
            decoder = RowDecoder(row_schema)
            self._decoders[ident] = decoder
        return decoder

    def decode(self, key: bytes | None, value: bytes | None) -> ChangeEvent | None:
        """A ChangeEvent, or None for a tombstone (a delete's follow-up, nothing to do)."""
        if value is None:
            return None
        split = self._split(value)
        if split is not None:
            decoder, payload = split
            return self._event(payload, key, decoder)
        doc = _loads(value, "value")
        if not isinstance(doc, dict):
            raise MalformedEvent("value is not a JSON object")
        if "payload" in doc and "schema" in doc:
            schema, payload = doc["schema"], doc["payload"]
        else:
            schema, payload = None, doc
        if not isinstance(payload, dict):
            raise MalformedEvent("payload is not a JSON object")
        return self._event(
            payload, key, self._row_decoder(schema if isinstance(schema, dict) else None)
        )

    def _split(self, value: bytes) -> tuple[RowDecoder, dict[str, Any]] | None:
        """Parse only the payload of a JsonConverter envelope, ``{"schema":…,"payload":…}``
        (in that order): the schema is ~80 % of the bytes and the same for every event
        of a table until its columns change, so its bytes key a cache of row decoders.
        The first ``,"payload":`` ends the schema: the schema's own keys are fixed
        words, and a quote inside a string value is escaped. None: not that shape."""
        if not value.startswith(_SCHEMA_KEY) or not value.endswith(b"}"):
            return None
        cut = value.find(_PAYLOAD_KEY)
        if cut < 0:
            return None
        raw = value[len(_SCHEMA_KEY) : cut]
        decoder = self._by_schema_bytes.get(raw)
        if decoder is None:
            try:
                schema = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return None
            decoder = self._row_decoder(schema if isinstance(schema, dict) else None)
            if len(self._by_schema_bytes) >= _SCHEMA_CACHE_SIZE:
                self._by_schema_bytes.clear()
            self._by_schema_bytes[raw] = decoder
        try:
            payload = orjson.loads(value[cut + len(_PAYLOAD_KEY) : -1])
        except orjson.JSONDecodeError:
            return None  # the full parse decides (and names the error)
        if not isinstance(payload, dict):
            return None
        return decoder, payload

    def _event(
        self, payload: dict[str, Any], key: bytes | None, decoder: RowDecoder
    ) -> ChangeEvent:
        op = payload.get("op")
        source = payload.get("source")
        if op not in ("c", "r", "u", "d", "t") or not isinstance(source, dict):
            raise MalformedEvent("not a Debezium change event (missing op or source)")
        table = source.get("table")
        if not isinstance(table, str):
            raise MalformedEvent("source.table missing")
        schema_name = str(source.get("schema") or "public")
        try:
            lsn = int(source.get("lsn") or 0)
            t0 = (
                int(source["ts_us"])
                if source.get("ts_us") is not None
                else int(source["ts_ms"]) * 1000
            )
            t1 = (
                int(payload["ts_us"])
                if payload.get("ts_us") is not None
                else int(payload["ts_ms"]) * 1000
            )
            tx_id = int(source.get("txId") or 0)
            txn = payload.get("transaction")
            tx_order = int(txn.get("total_order") or 0) if isinstance(txn, dict) else 0
            order = tx_order if tx_order else (1 if op == "c" else 0)
            position = (*_position(source.get("sequence"), lsn), order)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEvent(f"bad source block: {exc!r}") from None
        before, after = payload.get("before"), payload.get("after")
        if before is not None and not isinstance(before, dict):
            raise MalformedEvent("before is not an object")
        if after is not None and not isinstance(after, dict):
            raise MalformedEvent("after is not an object")
        if op in ("c", "r", "u") and after is None:
            raise MalformedEvent(f"op {op} without an after image")
        if op == "d" and before is None:
            raise MalformedEvent("delete without a before image")
        if decoder is _PLAIN and self.types is not None and op != "t":
            event = self._typed_event(payload, key, schema_name, table, op, before, after, t0,
                                      t1, tx_id, lsn, position, tx_order)  # fmt: skip
        else:
            event = self._build(payload, key, qualified_name(schema_name, table), op, decoder,
                                before, after, t0, t1, tx_id, lsn, position, tx_order)  # fmt: skip
        event.schema, event.source_table = schema_name, table
        return event

    def _typed_event(
        self, payload: dict[str, Any], key: bytes | None, schema_name: str, table: str,
        op: str, before: Any, after: Any, t0: int, t1: int, tx_id: int, lsn: int,
        position: tuple[int, int, int], tx_order: int,
    ) -> ChangeEvent:  # fmt: skip
        """Decode with the row schema read from the catalogue; read it again once when a
        value does not fit (a column's type changed since it was cached)."""
        assert self.types is not None
        name = qualified_name(schema_name, table)
        columns = frozenset((after if after is not None else before) or {})
        for refresh in (False, True):
            row = self.types.row_schema(schema_name, table, columns, refresh=refresh)
            cached = self._typed.get((schema_name, table))
            if cached is None or cached[0] is not row:
                cached = (row, RowDecoder(row))
                self._typed[(schema_name, table)] = cached
            decoder = cached[1]
            try:
                return self._build(payload, key, name, op, decoder, before, after, t0, t1,
                                   tx_id, lsn, position, tx_order)  # fmt: skip
            except MalformedEvent:
                if refresh:
                    raise
        raise AssertionError("unreachable")

    def _build(
        self, payload: dict[str, Any], key: bytes | None, table: str, op: str,
        decoder: RowDecoder, before: Any, after: Any, t0: int, t1: int, tx_id: int, lsn: int,
        position: tuple[int, int, int], tx_order: int,
    ) -> ChangeEvent:  # fmt: skip
        key_doc = None
        if key is not None:
            parsed = _loads(key, "key")
            if isinstance(parsed, dict) and "payload" in parsed and "schema" in parsed:
                parsed = parsed["payload"]
            key_doc = parsed if isinstance(parsed, dict) else None
        return ChangeEvent(
            table=table,
            op=op,
            key=key_doc,
            before=decoder.decode(before, toast=op == "u"),
            after=decoder.decode(after, toast=op == "u"),
            tx_id=tx_id,
            lsn=lsn,
            position=position,
            source_ts_us=t0,
            debezium_ts_us=t1,
            tx_order=tx_order,
        )


_PLAIN = RowDecoder(None)


def _loads(raw: bytes, what: str) -> Any:
    """Parse with orjson (schema-carrying envelopes are large: ~3x faster than json);
    the standard parser is the fallback for what orjson refuses, e.g. integers beyond
    64 bits, so both accept the same documents."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEvent(f"{what} is not JSON: {exc}") from None


def _position(sequence: Any, lsn: int) -> tuple[int, int]:
    """Debezium's sequence is ["<last commit lsn>", "<lsn>"]: ordered like the stream."""
    if isinstance(sequence, str):
        # Debezium's own shape, two decimal strings, through orjson: the standard parser
        # was ~1 µs of every event. For two strings both parsers give the same list;
        # anything else takes the standard parser's path below, unchanged (orjson reads
        # an integer beyond 64 bits as a float, and refuses NaN).
        try:
            parts = orjson.loads(sequence)
        except orjson.JSONDecodeError:
            parts = None
        if type(parts) is list and len(parts) == 2:
            first, second = parts
            if type(first) is str and type(second) is str:
                try:
                    return (int(first), int(second))
                except ValueError:
                    pass  # the standard path below says (0, lsn) too
        try:
            parts = json.loads(sequence)
            first = int(parts[0]) if parts and parts[0] is not None else 0
            second = int(parts[1]) if len(parts) > 1 and parts[1] is not None else lsn
            return (first, second)
        except (ValueError, TypeError, IndexError, json.JSONDecodeError):
            pass
    return (0, lsn)
