"""The sinks a race can run, each configured the way its own documentation recommends
for low latency, and as fairly as the store allows.

Every sink reads the same change topic (``<prefix>.public.race_events``: Debezium's
envelope as JSON without schemas, keys ``{"id": n}``) from a consumer group of its own,
whose offsets the race commits before the sink starts, and writes one document per row
into a database of its own on the same store.

- ``ours``: ``event-processor consume`` (a process of its own).
- ``quix``: quix-streams' ``MongoDBSink`` behind a Debezium unwrap (``race.quix_sink``),
  a process of its own; ``_id`` the row key as ours writes it.
- ``mongo-connector``: MongoDB's Kafka sink connector with a scalar ``_id``: the key
  ``{"id": n}`` renamed to ``{"_id": n}`` (``ReplaceField$Key``) and taken from the key
  (``ProvidedInKeyStrategy``), the value reduced to the row (``ExtractField$Value`` on
  ``after``; Debezium's ``ExtractNewRecordState`` passes schemaless values through
  unchanged), a null value (a delete, a tombstone) deleting the document.
- ``mongo-connector-cdc``: the same connector with its Debezium PostgreSQL handler,
  which writes the key document as ``_id`` (``{"id": n}``).
- ``debezium``: Debezium's ``MongoDbSinkConnector``, whose ``_id`` is the key document.

FerretDB 1.x cannot use its ``_id`` index for a document-valued ``_id``: every upsert of
the last two scans the collection, which is the store's limitation, not theirs; the
scalar variant of MongoDB's connector is raced beside them for that reason. Connectors
run on the race's own Connect worker (``race.worker``), one at a time when alone.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from event_processor.settings import Settings
from event_processor.source.schema import RACE_TABLE
from event_processor.stack.connect import JSON_CONVERTER

OURS = "ours"
QUIX = "quix"
MONGO_CONNECTOR = "mongo-connector"
MONGO_CONNECTOR_CDC = "mongo-connector-cdc"
DEBEZIUM = "debezium"
ALL_SINKS = (OURS, QUIX, MONGO_CONNECTOR, MONGO_CONNECTOR_CDC, DEBEZIUM)
DEFAULT_SINKS = ALL_SINKS

MONGO_SINK_CLASS = "com.mongodb.kafka.connect.MongoSinkConnector"
DEBEZIUM_SINK_CLASS = "io.debezium.connector.mongodb.MongoDbSinkConnector"
MONGO_ID = "com.mongodb.kafka.connect.sink.processor.id.strategy"
POSTGRES_HANDLER = "com.mongodb.kafka.connect.sink.cdc.debezium.rdbms.postgres.PostgresHandler"
# How long quix-streams waits between checkpoints (its documented default is 5 s; ours
# commits after every written batch): comparable to ours, see race.quix_sink.
QUIX_COMMIT_INTERVAL_S = 0.05


@dataclass(frozen=True, slots=True)
class Sink:
    name: str
    label: str
    kind: str  # "consumer", "process", "connector" or "external" (started by nobody)
    # The _id it writes for row n: "str" ("n"), "int" (n), "doc" ({"id": n}), or "auto"
    # (an external pipeline: any of them).
    id_kind: str
    why: str
    db: str = ""  # its database, when not the race's own for it

    @property
    def database(self) -> str:
        return self.db or "ep_race_" + self.name.replace("-", "_")

    def encode_ids(self, row_id: int) -> list[Any]:
        """Every _id the sink may have given row ``row_id``."""
        if self.id_kind == "auto":
            return [str(row_id), row_id, {"id": row_id}]
        return [self.encode_id(row_id)]

    @property
    def connector_name(self) -> str:
        return f"ep-race-{self.name}"

    def encode_id(self, row_id: int) -> Any:
        if self.id_kind == "str":
            return str(row_id)
        if self.id_kind == "int":
            return row_id
        return {"id": row_id}

    def decode_id(self, value: Any) -> int:
        return int(value["id"]) if isinstance(value, dict) else int(value)


SINKS: dict[str, Sink] = {
    s.name: s
    for s in (
        Sink(
            OURS,
            "event-processor consumer",
            "consumer",
            "str",
            "our consumer as `event-processor consume` runs it, with the settings it "
            "would read from the environment (printed below)",
        ),
        Sink(
            QUIX,
            "quix-streams MongoDBSink",
            "process",
            "str",
            f"quix-streams' MongoDBSink behind a Debezium unwrap (create/update: the row; "
            f"delete: removed), _id the row key as ours writes it, checkpoints every "
            f"{QUIX_COMMIT_INTERVAL_S:g} s (its default is 5 s) to be comparable with ours, "
            f"which commits after every batch",
        ),
        Sink(
            MONGO_CONNECTOR,
            "MongoDB Kafka sink (scalar _id)",
            "connector",
            "int",
            "MongoDB's connector as its documentation sets it up for CDC data with an "
            "_id of its own: the value reduced to the row, the key's id renamed to _id "
            "and used as _id, a null value deleting; the store can use its _id index",
        ),
        Sink(
            MONGO_CONNECTOR_CDC,
            "MongoDB Kafka sink (Debezium handler)",
            "connector",
            "doc",
            "MongoDB's connector with its Debezium PostgreSQL handler, the setting its "
            "documentation gives for Debezium topics; _id is the key document, which "
            "FerretDB 1.x cannot find by index",
        ),
        Sink(
            DEBEZIUM,
            "Debezium MongoDB sink",
            "connector",
            "doc",
            "Debezium's own sink reads its envelope natively; _id is the key document, "
            "which FerretDB 1.x cannot find by index",
        ),
    )
}


def parse_sinks(text: str) -> list[Sink]:
    """``ours,quix,…`` -> the sinks, in that order; ours first if it is missing."""
    from event_processor.errors import ConfigError

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SINKS]
    if unknown or not names:
        raise ConfigError("race", f"unknown sink(s) {', '.join(unknown) or '(none)'}",
                          f"choose from {','.join(ALL_SINKS)}")  # fmt: skip
    if len(set(names)) != len(names):
        raise ConfigError("race", f"a sink is named twice in {text!r}", "name each once")
    if OURS not in names:
        names.insert(0, OURS)
    return [SINKS[n] for n in names]


def _json_converters() -> dict[str, str]:
    return {
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",  # as the source writes them
    }


def connector_config(
    sink: Sink, settings: Settings, topic: str, batch_size: int, collection: str = RACE_TABLE
) -> dict[str, str]:
    """The connector's configuration (Debezium 3.6, mongo-kafka-connect 2.0 option names).

    ``batch_size`` bounds the documents of one bulk write for every connector alike:
    FerretDB holds one PostgreSQL connection per statement of a write command until the
    command ends (pool 200), so the connectors' defaults (500, all polled) can stall it.
    """
    base = {"tasks.max": "1", "topics": topic, **_json_converters(), "errors.tolerance": "none"}
    if sink.name == DEBEZIUM:
        return {
            "connector.class": DEBEZIUM_SINK_CLASS,
            **base,
            "mongodb.connection.string": settings.mongodb_uri(),
            "sink.database": sink.database,
            # A literal: schemaless values give the sink no ${source.table} to resolve.
            "collection.name.format": collection,
            "batch.size": str(batch_size),
        }
    common = {
        "connector.class": MONGO_SINK_CLASS,
        **base,
        "connection.uri": settings.mongodb_uri(),
        "database": sink.database,
        "collection": collection,
        "max.batch.size": str(batch_size),
    }
    if sink.name == MONGO_CONNECTOR_CDC:
        return {**common, "change.data.capture.handler": POSTGRES_HANDLER}
    if sink.name == MONGO_CONNECTOR:
        return {
            **common,
            "transforms": "row,keyToId",
            "transforms.row.type": "org.apache.kafka.connect.transforms.ExtractField$Value",
            "transforms.row.field": "after",
            "transforms.keyToId.type": "org.apache.kafka.connect.transforms.ReplaceField$Key",
            "transforms.keyToId.renames": "id:_id",
            "document.id.strategy": f"{MONGO_ID}.ProvidedInKeyStrategy",
            "writemodel.strategy": "com.mongodb.kafka.connect.sink.writemodel.strategy."
            "ReplaceOneDefaultStrategy",
            "delete.on.null.values": "true",
        }
    raise ValueError(f"{sink.name} is not a connector")


def process_argv(sink: Sink, topic: str, group: str, collection: str) -> list[str]:
    """The command line of a sink that runs as a process of its own (quix)."""
    return [sys.executable, "-m", "event_processor.race.quix_sink", "--topic", topic,
            "--database", sink.database, "--collection", collection, "--group", group,
            "--commit-interval", str(QUIX_COMMIT_INTERVAL_S)]  # fmt: skip


def ours_config(settings: Settings, group: str) -> dict[str, str]:
    """The knobs our consumer runs with in the race (read from the same settings)."""
    fields = ("consumer_max_poll_records", "consumer_fetch_max_wait_ms",
              "consumer_fetch_min_bytes", "mongo_write_concurrency",
              "topic_partitions")  # fmt: skip
    dumped = settings.model_dump()
    out = {"program": "event-processor consume", "group": group,
           "EP_MONGO_DATABASE": SINKS[OURS].database}  # fmt: skip
    out.update({f: str(dumped[f]) for f in fields if f in dumped})
    return out


def redacted_config(config: dict[str, str]) -> dict[str, str]:
    """A configuration fit for a report: no connection string (it may hold secrets)."""
    return {k: v for k, v in config.items() if "connection" not in k}
