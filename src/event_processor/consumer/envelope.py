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

# Kafka's record timestamp type for broker append time.
LOG_APPEND_TIME = 1
EPOCH_DATE = dt.date(1970, 1, 1)


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


@dataclass(slots=True)
class ChangeEvent:
    """One decoded row change."""

    table: str
    op: str  # c, r, u, d, t
    key: dict[str, Any] | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    tx_id: int
    lsn: int
    # (commit-ordered sequence, lsn, op rank): monotone per partition. A primary-key
    # update arrives as a delete and a create at the same LSN: the rank orders them.
    position: tuple[int, int, int]
    source_ts_us: int  # T0: commit time
    debezium_ts_us: int  # T1: processed by Debezium


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

    def __init__(self) -> None:
        self._decoders: dict[tuple[Any, ...], RowDecoder] = {}

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
        doc = _loads(value, "value")
        if not isinstance(doc, dict):
            raise MalformedEvent("value is not a JSON object")
        if "payload" in doc and "schema" in doc:
            schema, payload = doc["schema"], doc["payload"]
        else:
            schema, payload = None, doc
        if not isinstance(payload, dict):
            raise MalformedEvent("payload is not a JSON object")
        return self._event(schema, payload, key)

    def _event(self, schema: Any, payload: dict[str, Any], key: bytes | None) -> ChangeEvent:
        op = payload.get("op")
        source = payload.get("source")
        if op not in ("c", "r", "u", "d", "t") or not isinstance(source, dict):
            raise MalformedEvent("not a Debezium change event (missing op or source)")
        table = source.get("table")
        if not isinstance(table, str):
            raise MalformedEvent("source.table missing")
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
            position = (*_position(source.get("sequence"), lsn), 1 if op == "c" else 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedEvent(f"bad source block: {exc!r}") from None
        decoder = self._row_decoder(schema if isinstance(schema, dict) else None)
        before, after = payload.get("before"), payload.get("after")
        if before is not None and not isinstance(before, dict):
            raise MalformedEvent("before is not an object")
        if after is not None and not isinstance(after, dict):
            raise MalformedEvent("after is not an object")
        if op in ("c", "r", "u") and after is None:
            raise MalformedEvent(f"op {op} without an after image")
        if op == "d" and before is None:
            raise MalformedEvent("delete without a before image")
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
        try:
            parts = json.loads(sequence)
            first = int(parts[0]) if parts and parts[0] is not None else 0
            second = int(parts[1]) if len(parts) > 1 and parts[1] is not None else lsn
            return (first, second)
        except (ValueError, TypeError, IndexError, json.JSONDecodeError):
            pass
    return (0, lsn)
