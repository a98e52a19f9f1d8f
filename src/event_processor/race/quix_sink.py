"""A quix-streams peer for the race: Debezium change events from Kafka into MongoDB.

Run as a process::

    python -m event_processor.race.quix_sink --topic T --database D --collection C --group G

It is quix-streams' own ``MongoDBSink`` (``quixstreams.sinks.community.mongodb``) behind a
quix ``Application``, configured as follows (:func:`quix_sink_config` returns all of it
as strings, :data:`WHY` says why in one sentence):

- **Commit interval 0.05 s** (``--commit-interval``). quix-streams' documented default is
  5 s. A ``BatchingSink`` writes only when the checkpoint is committed: every record
  processed since the last checkpoint is kept in memory per topic partition and written
  by ``flush()`` -> ``write(batch)``, then the offsets are committed. With 5 s a row would
  wait up to 5 s before it is even written; our consumer writes each polled batch right
  away and commits after the write, so 0.05 s makes the two comparable.
- **Consumer poll timeout = the commit interval** (at most quix's default of 1 s). quix
  checks the checkpoint only between polls, so with its default 1 s poll a lone row
  could wait a whole second for the next poll to return before its checkpoint commits.
- **auto_offset_reset "earliest"**. The race commits the group's offsets itself (at the
  end of the topic) before it starts the peer, so the reset only decides where a fresh,
  never-committed group starts: at the beginning (quix's default is "latest").
- **Debezium envelope.** quix-streams has no Debezium handling, so a ``MongoDBSink``
  subclass does it in ``write()``: ``c``/``r``/``u`` -> ``ReplaceOne(after)`` with
  ``upsert=True`` (the sink's ``update_method="ReplaceOne"``), ``d`` -> ``DeleteOne`` by the
  row key, ``t`` (TRUNCATE) -> ``DeleteMany({})``; tombstones (value null, after every
  delete) are dropped by a ``filter`` before the sink. Values are JSON without schema
  envelope (``schemas.enable=false``), keys like ``{"id": 1}``.
- **Document ``_id``** = the row key as a string (``str(key["id"])``, or the key columns
  joined with ``|``: ``consumer.projection.doc_id``), the same scalar ``_id`` our consumer
  writes; the rest of the document is the row's columns (``after`` as Debezium sends it).
  This is the sink's ``document_matcher``: ``{"_id": <that string>}``.
- **At most N statements per bulk write** (``--ops-per-write``, default
  ``EP_RACE_SINK_BATCH_SIZE``, as the Debezium sink's ``batch.size``). The stock
  ``write()`` sends a checkpoint's whole partition batch as one ``bulk_write``; FerretDB
  1.x holds a PostgreSQL connection per statement of a command until it ends (pool 200),
  so a backlog checkpoint of thousands of rows would never finish there
  (``consumer/writer.py``). Writes are ordered, so a row's changes apply in log order.
- No state stores and no changelog topics (the state directory is a temporary one, so
  nothing lands in the working directory); the topic must exist (not auto-created).

At-least-once: a crash before the offsets are committed replays the batch, which is
idempotent (replace / delete by ``_id``). Write errors are retried as the stock sink does
(3 tries on network timeouts, then quix's backpressure pause of 30 s); any other error
(a malformed event, a document the store refuses) stops the process with a non-zero exit.

SIGTERM (or SIGINT) stops quix's loop, the pending checkpoint is written and committed,
and the process exits 0. A bad option, or Kafka / MongoDB not reachable at start, is one
line ``quix-sink: ...`` on stderr and a non-zero exit. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import math
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, cast

from pymongo import DeleteMany, DeleteOne, ReplaceOne

from event_processor.consumer.projection import doc_id
from event_processor.errors import ConfigError, EventProcessorError, StackError
from event_processor.settings import get_settings

if TYPE_CHECKING:
    from quixstreams.sinks.base.item import SinkItem

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")

COMPONENT = "quix-sink"
DEFAULT_COMMIT_INTERVAL_S = 0.05
QUIX_DEFAULT_COMMIT_INTERVAL_S = 5.0  # quixstreams.Application(commit_interval=5.0)
QUIX_DEFAULT_POLL_TIMEOUT_S = 1.0  # quixstreams.Application(consumer_poll_timeout=1.0)
AUTO_OFFSET_RESET: Final = "earliest"
UPDATE_METHOD: Final = "ReplaceOne"
DOCUMENT_MATCHER = '{"_id": str(key["id"])} (key columns joined by "|" if several)'
PROCESSING_GUARANTEE: Final = "at-least-once"
CONNECT_TIMEOUT_S = 5.0
# The stock MongoDBSink's retry policy, kept as is (quixstreams.sinks.community.mongodb).
WRITE_ATTEMPTS = 3
ATTEMPT_BACKOFF_S = 5.0
BACKPRESSURE_PAUSE_S = 30.0

WHY = (
    "quix writes a batch only at a checkpoint, so checkpoints come every 0.05 s instead "
    "of its default 5 s (polling no longer than that) because our consumer writes "
    "each poll right away; offsets reset to earliest because the race commits the "
    "group's start itself; rows are ReplaceOne-upserted, and deleted by key, under the "
    "same string _id our consumer writes; and at most EP_RACE_SINK_BATCH_SIZE statements "
    "go in one bulk write because FerretDB holds a connection per statement."
)

log = logging.getLogger("event_processor.race.quix_sink")  # also when run as __main__


def quixstreams_version() -> str:
    """The installed quixstreams version ("not installed" without it)."""
    try:
        return importlib.metadata.version("quixstreams")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def poll_timeout_s(commit_interval_s: float) -> float:
    """How long one consumer poll may block: the commit interval, within 0.01-1 s."""
    return min(max(commit_interval_s, 0.01), QUIX_DEFAULT_POLL_TIMEOUT_S)


def quix_sink_config(
    topic: str,
    database: str,
    collection: str,
    group: str,
    commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S,
    ops_per_write: int | None = None,
) -> dict[str, str]:
    """The sink's full effective configuration, as strings (for the race report)."""
    if ops_per_write is None:
        ops_per_write = get_settings().race_sink_batch_size
    return {
        "sink": "quixstreams Application + MongoDBSink subclass (Debezium envelope)",
        "quixstreams_version": quixstreams_version(),
        "topic": topic,
        "consumer_group": group,
        "auto_offset_reset": AUTO_OFFSET_RESET,
        "commit_interval_s": f"{commit_interval_s:g}",
        "quix_default_commit_interval_s": f"{QUIX_DEFAULT_COMMIT_INTERVAL_S:g}",
        "commit_every": "0 (interval only)",
        "consumer_poll_timeout_s": f"{poll_timeout_s(commit_interval_s):g}",
        "processing_guarantee": PROCESSING_GUARANTEE,
        "database": database,
        "collection": collection,
        "document_matcher": DOCUMENT_MATCHER,
        "update_method": UPDATE_METHOD,
        "upsert": "true",
        "ops": "c/r/u -> ReplaceOne(after), d -> DeleteOne by key, t -> DeleteMany({}), "
        "tombstones skipped",
        "ops_per_write": str(ops_per_write),
        "ordered_writes": "true",
        "write_retries": f"{WRITE_ATTEMPTS} tries {ATTEMPT_BACKOFF_S:g} s apart on network "
        f"timeouts, then a {BACKPRESSURE_PAUSE_S:g} s backpressure pause",
        "value_format": "JSON without schema envelope; key JSON",
    }


# --- Debezium change event -> MongoDB write --------------------------------------------


def document_id(key: Any) -> str:
    """The document ``_id`` for a Kafka record key ``{"id": 1}``: ``"1"``."""
    if not isinstance(key, dict) or not key:
        raise ValueError(f"expected a row key like {{'id': 1}}, got {key!r}")
    return doc_id(list(key.values()))


def change_operation(key: Any, value: Any) -> ReplaceOne[Any] | DeleteOne | DeleteMany:
    """The MongoDB write a Debezium change event implies (a tombstone has none and
    never gets here). ValueError for what is not a change event."""
    if not isinstance(value, dict):
        raise ValueError(f"not a Debezium change event: {value!r:.200}")
    op = value.get("op")
    if op in ("c", "r", "u"):
        after = value.get("after")
        if not isinstance(after, dict):
            raise ValueError(f"change event op={op!r} without an 'after' row")
        _id = document_id(key)
        return ReplaceOne({"_id": _id}, {"_id": _id, **after}, upsert=True)
    if op == "d":
        return DeleteOne({"_id": document_id(key)})
    if op == "t":
        return DeleteMany({})
    raise ValueError(f"unsupported Debezium op {op!r}")


def match_row_key(item: SinkItem) -> dict[str, Any]:
    """``document_matcher`` of the sink: the document named by the record key."""
    return {"_id": document_id(item.key)}


def is_change(value: Any) -> bool:
    """False for a tombstone (null value), which follows every delete."""
    return value is not None


# --- the quix application ---------------------------------------------------------------


def _mongo_host(uri: str) -> str:
    """MongoDBSink takes ``host`` and prefixes ``mongodb://`` itself."""
    prefix = "mongodb://"
    if not uri.startswith(prefix):
        raise ConfigError(
            COMPONENT,
            f"MongoDBSink builds a mongodb:// URI itself; cannot use {uri.split(':')[0]}://",
            "point EP_MONGO_URI at a mongodb:// URI",
        )
    return uri[len(prefix) :]


def _check_kafka(servers: str, topic: str) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    quiet = logging.getLogger(f"{__name__}.preflight")
    quiet.setLevel(logging.CRITICAL)
    admin = AdminClient(
        {"bootstrap.servers": servers, "logger": quiet, "error_cb": lambda _err: None}
    )
    try:
        # Every topic's metadata: asking for one topic by name can make the broker
        # create it (auto.create.topics.enable).
        meta = admin.list_topics(timeout=CONNECT_TIMEOUT_S)
    except KafkaException as exc:
        raise StackError(
            COMPONENT,
            f"Kafka at {servers} not reachable ({exc.args[0].str() if exc.args else exc})",
            "start the stack or set EP_KAFKA_BOOTSTRAP",
        ) from None
    found = meta.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise StackError(
            COMPONENT, f"topic {topic!r} does not exist on {servers}", "create it first"
        )


def _check_mongo(uri: str, database: str) -> None:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient[dict[str, Any]] = MongoClient(
        uri, serverSelectionTimeoutMS=int(CONNECT_TIMEOUT_S * 1000)
    )
    try:
        client[database].command("ping")
    except PyMongoError as exc:
        raise StackError(
            COMPONENT,
            f"MongoDB not reachable ({type(exc).__name__}: {_first_line(exc)})",
            "start the stack or set EP_MONGO_URI",
        ) from None
    finally:
        client.close()


def _first_line(exc: BaseException) -> str:
    text = (str(exc).splitlines() or [""])[0]
    return text.split(" (configured timeouts")[0][:300]


def _build_sink(uri: str, database: str, collection: str, ops_per_write: int) -> Any:
    """The MongoDBSink subclass (quixstreams is imported only when the sink runs)."""
    from pymongo.errors import ExecutionTimeout, NetworkTimeout, WriteConcernError
    from quixstreams.sinks import SinkBackpressureError, SinkBatch
    from quixstreams.sinks.community.mongodb import MongoDBSink

    class DebeziumMongoDBSink(MongoDBSink):
        """MongoDBSink that applies Debezium change events: replace, delete, truncate."""

        def write(self, batch: SinkBatch) -> None:
            collection = self._collection
            assert collection is not None, "setup() connects before the first write"
            for chunk in batch.iter_chunks(ops_per_write):
                ops: list[Any] = []
                for item in chunk:
                    try:
                        ops.append(change_operation(item.key, item.value))
                    except ValueError as exc:
                        where = f"{batch.topic}[{batch.partition}] offset {item.offset}"
                        raise ValueError(f"{where}: {exc}") from None
                self._bulk_write(collection, ops)
            log.debug("wrote %d changes of %s[%d]", batch.size, batch.topic, batch.partition)

        def _bulk_write(self, collection: Any, ops: list[Any]) -> None:
            # The stock write()'s retry policy: network trouble is retried, then the
            # partition is paused (the batch is re-read from the last commit).
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                try:
                    collection.bulk_write(ops, ordered=True)
                    return
                except (NetworkTimeout, ExecutionTimeout, WriteConcernError) as exc:
                    log.error("MongoDB write failed (try %d of %d): %s", attempt,
                              WRITE_ATTEMPTS, exc)  # fmt: skip
                    if attempt < WRITE_ATTEMPTS:
                        time.sleep(ATTEMPT_BACKOFF_S)
            raise SinkBackpressureError(retry_after=BACKPRESSURE_PAUSE_S)

    return DebeziumMongoDBSink(
        host=_mongo_host(uri),
        db=database,
        collection=collection,
        document_matcher=match_row_key,
        update_method=UPDATE_METHOD,
        upsert=True,
        authentication_timeout_ms=int(CONNECT_TIMEOUT_S * 1000),
        # MongoClient options, as our consumer's writer has them.
        connectTimeoutMS=3000,
        socketTimeoutMS=30000,
    )


def run(
    topic: str,
    database: str,
    collection: str,
    group: str,
    commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S,
    ops_per_write: int | None = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Consume ``topic`` into ``database.collection`` until SIGTERM / SIGINT."""
    settings = get_settings()
    if ops_per_write is None:
        ops_per_write = settings.race_sink_batch_size
    # Import-time warnings (authlib, which confluent-kafka's schema registry client
    # imports, warns "always" about its httpx integration) go to the debug log, not stderr.
    with warnings.catch_warnings(record=True) as caught:
        try:
            from quixstreams import Application
        except ImportError as exc:
            raise ConfigError(
                COMPONENT,
                f"quixstreams is not installed ({exc})",
                "pip install quixstreams==3.28.1",
            ) from None
    for w in caught:
        log.debug("on import: %s: %s", w.category.__name__, w.message)
    servers, uri = settings.kafka_servers(), settings.mongodb_uri()
    _mongo_host(uri)
    _check_kafka(servers, topic)
    _check_mongo(uri, database)
    config = quix_sink_config(topic, database, collection, group, commit_interval_s,
                              ops_per_write)  # fmt: skip
    log.info("config: %s", " ".join(f"{k}={v!r}" for k, v in config.items()))

    with tempfile.TemporaryDirectory(prefix="quix-sink-state-") as state_dir:
        app = Application(
            broker_address=servers,
            consumer_group=group,
            auto_offset_reset=AUTO_OFFSET_RESET,
            commit_interval=commit_interval_s,
            commit_every=0,
            consumer_poll_timeout=poll_timeout_s(commit_interval_s),
            processing_guarantee=PROCESSING_GUARANTEE,
            state_dir=state_dir,
            use_changelog_topics=False,
            auto_create_topics=False,
            request_timeout=CONNECT_TIMEOUT_S * 2,
            loglevel=log_level,
        )
        source = app.topic(topic, key_deserializer="json", value_deserializer="json")
        sdf = app.dataframe(source)
        sdf = sdf.filter(is_change)
        sdf.sink(_build_sink(uri, database, collection, ops_per_write))
        app.run()  # returns after SIGTERM / SIGINT, the last checkpoint committed
    log.info("stopped")


# --- command line -----------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{COMPONENT}: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m event_processor.race.quix_sink",
        description="Race peer: consume Debezium change events (JSON without schema "
        "envelope) from a Kafka topic with quix-streams and apply them to a MongoDB "
        "collection with quix's MongoDBSink (replace by the row key as a string _id, "
        "delete on op d, tombstones skipped). Kafka and MongoDB come from the EP_* "
        "settings. Runs until SIGTERM or Ctrl+C, then commits and exits 0.",
    )
    parser.add_argument("--topic", required=True, help="the Debezium change topic to read")
    parser.add_argument("--database", required=True, help="MongoDB database to write to")
    parser.add_argument("--collection", required=True, help="MongoDB collection to write to")
    parser.add_argument(
        "--group",
        required=True,
        help="Kafka consumer group (starts at its committed offsets; a fresh group at the "
        "earliest)",
    )
    parser.add_argument(
        "--commit-interval",
        type=_interval,
        default=DEFAULT_COMMIT_INTERVAL_S,
        metavar="SECONDS",
        help="checkpoint interval: batches are written to MongoDB and offsets committed "
        f"this often (default {DEFAULT_COMMIT_INTERVAL_S:g}; quix-streams' own default is "
        f"{QUIX_DEFAULT_COMMIT_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--ops-per-write",
        type=_positive_int,
        default=None,
        metavar="N",
        help="at most N statements per MongoDB bulk write (default EP_RACE_SINK_BATCH_SIZE)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=LOG_LEVELS,
        help="log level on stderr (default INFO; DEBUG logs every batch written)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format=f"%(asctime)s {COMPONENT} %(levelname)s %(name)s: %(message)s",
    )

    def stop_before_start(_signum: int, _frame: Any) -> None:
        # Until quix's loop installs its own SIGTERM handler (which drains and commits).
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_before_start)
    try:
        run(args.topic, args.database, args.collection, args.group, args.commit_interval,
            args.ops_per_write, cast(LogLevel, args.log_level))  # fmt: skip
    except EventProcessorError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        print(f"{COMPONENT}: stopped by {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
