"""The consumer process: Kafka change topics -> projections -> MongoDB, timed per event.

Per batch: poll (T3) -> decode and project (T4) -> fold to one write per document ->
bulk write and wait for MongoDB's acknowledgement (T5) -> record source positions ->
flush dead letters -> commit offsets -> publish timing records.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from event_processor.consumer.column_types import ColumnTypes
from event_processor.consumer.dlq import DeadLetters
from event_processor.consumer.envelope import (
    ChangeEvent,
    EnvelopeDecoder,
    MalformedEvent,
)
from event_processor.consumer.projection import (
    ORDER_CHILDREN,
    ORDERS,
    REPLACED_TABLES,
    Projected,
    change_id,
    is_generic,
    project,
)
from event_processor.consumer.rekey import REKEY, KeyShapes, key_shape, rekey_collection
from event_processor.consumer.reshape import RESHAPE, ColumnShapes, column_names, resync_collection
from event_processor.consumer.shapes import SKIP
from event_processor.consumer.telemetry import ConsumerTelemetry
from event_processor.consumer.timings import TimingBatch, TimingPublisher
from event_processor.consumer.writer import NO_MARK, Mark, MongoSink, Refused, fold
from event_processor.metrics.timing import TimingRecord, wall_us
from event_processor.settings import Settings

log = logging.getLogger(__name__)

GC_GEN0_THRESHOLD = 20_000  # allocations between young collections (CPython: 700)


@dataclass
class ConsumerOptions:
    consumer_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    group: str | None = None
    metrics_port: int | None = None  # None: from settings; 0: no metrics endpoint
    from_beginning: bool = True
    max_batches: int | None = None  # stop after this many non-empty batches (tests)
    idle_exit_s: float | None = None  # stop after this long without messages (tests)


def position_key(topic: str, partition: int) -> str:
    return f"{topic}|{partition}"


def admit(mark: Mark, event: ChangeEvent, offset: int, partition: int) -> Mark | None:
    """The partition's mark after applying ``event`` (at ``offset``), or None when the
    event is a re-send of one already applied.

    Only a position strictly below the mark is a re-send. Positions tie for distinct
    changes: every row of one multi-row WAL record (COPY) carries that record's LSN, and
    snapshot rows share one position; skipping ties lost ~95 % of a COPY's rows. With
    Debezium's transaction.total_order in the position, streamed changes never tie. A
    tie is applied, and is safe: after a restart Debezium resumes past every event at
    its last stored LSN, or at the start of a transaction (WalPositionLocator), so a
    tie at a new offset is a new change, or at worst the re-send of one whose write is
    idempotent (replace / $set / delete by _id). Keyless rows, which count copies, get
    the tie's ordinal on its partition (``event.tie``) as part of their change name.
    """
    if event.position < mark.position:
        return None
    if event.position == mark.position:
        if not event.tx_order:
            event.tie = f"{partition}_{mark.ties}"
        return Mark(offset, event.position, mark.ties + 1)
    return Mark(offset, event.position, 1)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner) -> None:
        self.runner = runner

    def on_partitions_revoked(self, revoked: Any) -> None:
        # Between batches: all that was polled is written; hand over a fresh watermark.
        self.runner.save_watermark(sync=True)
        for tp in revoked:
            self.runner.positions.pop(position_key(tp.topic, tp.partition), None)

    def on_partitions_assigned(self, assigned: Any) -> None:
        keys = [position_key(tp.topic, tp.partition) for tp in assigned]
        self.runner.positions.update(self.runner.sink.load_positions(keys))
        log.info("assigned %s", sorted(keys))


class ConsumerRunner:
    def __init__(self, settings: Settings, options: ConsumerOptions | None = None) -> None:
        self.settings = settings
        self.options = options or ConsumerOptions()
        self.decoder = EnvelopeDecoder(ColumnTypes(settings.postgres_dsn()))
        self.stopping = False
        self.telemetry = ConsumerTelemetry(self._metrics_port())
        self.sink = MongoSink(
            settings.mongodb_uri(),
            settings.mongo_database,
            on_retry=self.telemetry.retry,
            max_ops_per_command=settings.mongo_ops_per_command,
            write_concurrency=settings.mongo_write_concurrency,
        )
        self.sink.warm_up()
        self.keys = KeyShapes(self.sink.db, self.sink.retrying)
        self.columns = ColumnShapes(self.sink.db, self.sink.retrying)
        self._source_dsn = settings.postgres_dsn()
        # Everything built so far lives as long as the process: keep it out of the
        # collector's generations, and collect young objects less often. A full
        # collection over kafka-python's and pymongo's objects stalled a batch for tens
        # of milliseconds about a second into every load (measured per 250 ms window).
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
        self.positions: dict[str, Mark] = {}
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka_servers(), linger_ms=20, acks=1, retries=5
        )
        self.dead_letters = DeadLetters(self.producer, settings.dlq_topic)
        self.timings = TimingPublisher(self.producer, settings.timings_topic)
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_servers(),
            group_id=self.options.group or settings.consumer_group,
            client_id=self.options.consumer_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self.options.from_beginning else "latest",
            max_poll_records=settings.consumer_max_poll_records,
            # The broker holds a fetch until it has fetch_min_bytes or waited
            # fetch_max_wait_ms (settings: the default answers as soon as data arrives;
            # at 200 events/s that made batches of ~7 rows, ~7 ms of consumer CPU each).
            fetch_min_bytes=settings.consumer_fetch_min_bytes,
            fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
            metadata_max_age_ms=3000,  # see tables created after start-up quickly
            # Every change topic has one partition: the range assignor (the default)
            # would hand every topic's partition 0 to the same member.
            partition_assignment_strategy=[RoundRobinPartitionAssignor],
            max_partition_fetch_bytes=4 * 1024 * 1024,
            max_poll_interval_ms=600_000,  # a MongoDB outage is retried inside a batch
            # A killed member's partitions move after 10 s, not the 45 s default.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        self.consumer.subscribe(pattern=settings.change_topic_pattern(), listener=_Rebalance(self))
        self.batches = 0
        self._batch_open = False  # a batch was polled but not completely written
        # Marks applied in MongoDB but not yet saved in _ep_positions / committed to Kafka.
        self._unsaved: dict[str, Mark] = {}
        # Next offset per partition polled and written (skipped duplicates included).
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}
        self._saved_at = time.monotonic()
        self._save_interval_s = settings.position_save_interval_ms / 1000
        self.telemetry.effective_settings(self.effective_settings())

    def effective_settings(self) -> dict[str, int | float | str]:
        """The knobs this process runs with, read back from its clients (recorded in
        every report through the metrics endpoint)."""
        config = self.consumer.config
        return {
            "consumer_max_poll_records": config["max_poll_records"],
            "consumer_fetch_max_wait_ms": config["fetch_max_wait_ms"],
            "consumer_fetch_min_bytes": config["fetch_min_bytes"],
            "mongo_write_concurrency": self.sink.write_concurrency,
            "mongo_ops_per_command": self.sink.max_ops_per_command,
            "position_save_interval_ms": round(self._save_interval_s * 1000),
            "timings_linger_ms": self.producer.config["linger_ms"],
        }

    def _metrics_port(self) -> int:
        if self.options.metrics_port is not None:
            return self.options.metrics_port
        return self.settings.metrics_port

    def request_stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self, on_batch: Callable[[list[TimingRecord]], None] | None = None) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        idle_since = time.monotonic()
        try:
            while not self.stopping:
                try:
                    polled = self.consumer.poll(timeout_ms=200)
                except KafkaError as exc:
                    # The broker went away or the group is rebalancing: keep trying.
                    log.warning("poll failed (%s); retrying", exc)
                    time.sleep(0.5)
                    continue
                if not polled:
                    self.save_watermark()
                    if (
                        self.options.idle_exit_s
                        and time.monotonic() - idle_since > self.options.idle_exit_s
                    ):
                        break
                    self.telemetry.idle(self.consumer)
                    continue
                idle_since = time.monotonic()
                records = self.process(polled, want_records=on_batch is not None)
                if on_batch:
                    on_batch(records)
                self.batches += 1
                if self.options.max_batches and self.batches >= self.options.max_batches:
                    break
        finally:
            self.close()
        return 0

    def process(
        self, polled: dict[TopicPartition, list[Any]], want_records: bool = False
    ) -> list[TimingRecord]:
        """Apply one polled batch and publish its timing records; returns them when
        ``want_records`` (building objects per event costs time otherwise)."""
        t3 = wall_us()
        started = time.perf_counter()
        self._batch_open = True
        projected: list[Projected] = []
        pending: list[tuple[ChangeEvent, Any, list[Projected]]] = []
        advanced: dict[str, Mark] = {}
        refused: Refused = {}

        def flush() -> None:
            # A TRUNCATE, a key or a column change applies to everything written before
            # it: write what this batch holds so far first (a table's changes arrive in
            # commit order on one partition).
            refused.update(self.sink.write(fold(projected)))
            projected.clear()

        for tp, messages in polled.items():
            pkey = position_key(tp.topic, tp.partition)
            mark = self.positions.get(pkey, NO_MARK)
            for m in messages:
                # Offsets catch a re-read of the topic (replay, restart); source
                # positions catch Debezium re-sending older changes at new offsets.
                if m.offset <= mark.offset:
                    self.telemetry.duplicate()
                    continue
                mark = Mark(m.offset, mark.position, mark.ties)
                advanced[pkey] = mark
                event = self._decode(m)
                if event is None:
                    continue
                admitted = admit(mark, event, m.offset, tp.partition)
                if admitted is None:
                    self.telemetry.duplicate()
                    continue
                mark = admitted
                advanced[pkey] = mark
                if event.op == "t":
                    flush()
                    self._truncate(event.table)
                    continue
                if is_generic(event.table):
                    verdict = self.keys.check(event)
                    if verdict == REKEY:
                        flush()
                        self._rekey(event)
                    if verdict != SKIP:
                        verdict = self.columns.check(event)
                        if verdict == RESHAPE:
                            flush()
                            self._reshape(event)
                    if verdict == SKIP:
                        self.telemetry.duplicate()
                        continue
                try:
                    writes = project(event)
                except (KeyError, TypeError, ValueError, AssertionError) as exc:
                    self._dead_letter(m, f"cannot project: {exc!r}")
                    continue
                projected.extend(writes)
                pending.append((event, m, writes))
        t4 = wall_us()
        flush()
        t5 = wall_us()
        if refused:
            pending = self._dead_letter_refused(pending, refused)
        self.positions.update(advanced)
        self._unsaved.update(advanced)
        for tp, messages in polled.items():
            if messages:
                self._uncommitted[tp] = OffsetAndMetadata(messages[-1].offset + 1, "", -1)
        self.dead_letters.flush()
        if time.monotonic() - self._saved_at >= self._save_interval_s:
            self.save_watermark()
        # CPU time of this thread, not wall time: while it builds and sends the timing
        # message, kafka-python's network thread may hold the GIL fetching the next
        # batch, and that wait is the consumer's work, not the instrumentation's (wall
        # time read 3.5 % on one run of the backlog test and 7.2 % on another).
        timing_cpu_started = time.thread_time()
        batch = TimingBatch(t3, t4, t5, self.options.consumer_id)
        # Per-event columns only (see TimingBatch), built without objects: once per
        # event. T2 is LogAppendTime on our topics (on a user's CreateTime topic it is
        # the Connect producer's stamp).
        rows = [
            [e.table, e.op, w[0].id if w else "", e.tx_id, e.lsn, e.source_ts_us,
             e.debezium_ts_us, m.timestamp * 1000, m.partition, m.offset]
            for e, m, w in pending
        ]  # fmt: skip
        self._batch_open = False
        self.timings.publish_batch(batch, rows)
        self.telemetry.applied_batch(batch, rows)
        # The harness's own cost: building, publishing and counting timing records,
        # against the whole batch (kept under 5 %, see tests/integration).
        instrumentation_s = time.thread_time() - timing_cpu_started
        self.telemetry.cost(instrumentation_s, time.perf_counter() - started)
        return batch.records(rows) if want_records else []

    def save_watermark(self, sync: bool = False) -> None:
        """Store the applied marks in ``_ep_positions``, then commit the same offsets.

        Once per ``position_save_interval_ms`` (and when idle, on a rebalance, at exit),
        not per batch: on FerretDB each position is an upsert (a query and a write), a
        third of a small batch's time. A saved (offset, position) pair is always one
        whose writes MongoDB acknowledged, and Kafka never gets an offset beyond the
        saved pair; after a crash the consumer replays from an older pair, in log order,
        and re-applies idempotent writes. Only the saved pair may skip events: a commit
        ahead of it would let Debezium re-sends of older changes through.
        """
        self._saved_at = time.monotonic()
        if self._unsaved:
            marks, self._unsaved = self._unsaved, {}
            self.sink.save_positions(marks)
        if not self._uncommitted:
            return
        # Every saved mark's offset is at least the last offset polled on its partition
        # (a message skipped by offset lies below its mark): never ahead of the pair.
        offsets, self._uncommitted = self._uncommitted, {}
        try:
            if sync:
                self.consumer.commit(offsets)
            else:
                self.consumer.commit_async(offsets, callback=_log_commit_failure)
        except KafkaError as exc:
            # A rebalance or a broker restart: the next owner re-reads from the last
            # commit, and the positions just saved skip what we wrote. Nothing is lost.
            _log_commit_failure({}, exc)

    def _decode(self, m: Any) -> ChangeEvent | None:
        size = len(m.value or b"")
        if size > self.settings.max_event_bytes:
            limit = self.settings.max_event_bytes
            self._dead_letter(m, f"oversized value: {size} bytes > {limit} (EP_MAX_EVENT_BYTES)")
            return None
        try:
            return self.decoder.decode(m.key, m.value)
        except MalformedEvent as exc:
            self._dead_letter(m, str(exc))
            return None

    def _dead_letter_refused(
        self, pending: list[tuple[ChangeEvent, Any, list[Projected]]], refused: Refused
    ) -> list[tuple[ChangeEvent, Any, list[Projected]]]:
        """Dead-letter every event that wrote to a document the store refused; returns
        the events that were applied."""
        applied = []
        for event, m, writes in pending:
            why = next((r for w in writes if (r := refused.get((w.collection, w.id)))), None)
            if why is None:
                applied.append((event, m, writes))
            else:
                self._dead_letter(m, why)
        return applied

    def _dead_letter(self, m: Any, reason: str) -> None:
        log.warning("dead-lettering %s[%s]@%s: %s", m.topic, m.partition, m.offset, reason)
        self.dead_letters.send(m, reason, self.options.consumer_id)
        self.telemetry.dead_lettered()

    def _truncate(self, table: str) -> None:
        if table in REPLACED_TABLES:
            self.sink.db[REPLACED_TABLES[table]].delete_many({})
        elif table == ORDERS:
            self.sink.db[ORDERS].delete_many({})
        elif table in ORDER_CHILDREN:  # the orders stay, without their items/payments
            self.sink.db[ORDERS].update_many({}, {"$unset": {ORDER_CHILDREN[table]: ""}})
        else:
            self.sink.db[table].delete_many({})
        log.info("applied TRUNCATE of %s", table)

    def _rekey(self, event: ChangeEvent) -> None:
        old, new = self.keys.shape_of(event.table), key_shape(event)
        log.info("key of %s changed from %s to %s: re-keying its documents",
                 event.table, list(old) or "(none)", list(new) or "(none)")  # fmt: skip
        rekey_collection(self.sink.db[event.table], old, new, change_id(event))
        self.keys.remember(event.table, new, event.position)
        self.telemetry.rekeyed()

    def _reshape(self, event: ChangeEvent) -> None:
        """The table's columns changed (consumer.reshape): re-read it into its collection."""
        new = column_names(event)
        log.info("columns of %s changed to %s: re-reading the table", event.table, sorted(new))
        rows = self.sink.retrying(
            f"re-read of {event.table}",
            lambda: resync_collection(
                self._source_dsn,
                self.sink.db[event.table],
                event.schema,
                event.source_table,
                event.lsn,
            ),
        )
        if rows is None:
            log.warning("%s was not re-read (it has no primary key, or it was dropped): its "
                        "documents keep their old columns (verify reports them)",
                        event.table)  # fmt: skip
        else:
            log.info("re-read %d rows of %s", rows, event.table)
        self.columns.remember(event.table, new, event.position)

    def close(self) -> None:
        try:
            self.producer.flush(timeout=10)
            if not self._batch_open:  # everything polled is written: save it for sure
                self.save_watermark(sync=True)
        except KafkaError as exc:
            _log_commit_failure({}, exc)
        finally:
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=5)
            self.sink.close()
            self.telemetry.close()
            if self.decoder.types is not None:
                self.decoder.types.close()


def _log_commit_failure(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.warning("offset commit failed (%s); the next owner re-reads from there", response)


def topic_matches(settings: Settings, topic: str) -> bool:
    return re.match(settings.change_topic_pattern(), topic) is not None
