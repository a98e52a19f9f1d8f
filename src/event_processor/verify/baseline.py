"""A clean starting point for integrity tests: an empty read model that is a faithful
replica of a truncated source, also for consumers that replay Kafka from the beginning.

The change topics still hold events for rows that ``truncate_all`` removed. Dropping the
read model is not enough: a consumer in a new group would replay them. ``reset_read_model``
therefore records, as the consumer's per-partition source positions
(``_ep_positions``), the position of the last event already on Kafka: every consumer
skips the history before the reset exactly as it skips replayed events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from event_processor.consumer.envelope import EnvelopeDecoder, MalformedEvent
from event_processor.consumer.loop import position_key
from event_processor.consumer.projection import POSITIONS_COLLECTION
from event_processor.settings import Settings
from event_processor.verify.drain import KafkaProgress, wait_for_drain

Position = tuple[int, int, int]  # ChangeEvent.position
NO_POSITION: Position = (-1, -1, -1)


@dataclass(frozen=True, slots=True)
class Applied:
    """What the consumer stores per partition: last offset and last source position."""

    offset: int
    position: Position


@dataclass
class Baseline:
    positions: dict[str, Applied] = field(default_factory=dict)  # "topic|partition" -> mark
    end_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def last_positions(
    settings: Settings, end: dict[tuple[str, int], int], timeout_s: float = 30.0
) -> dict[str, Applied]:
    """Last offset and last event's source position of every non-empty partition."""
    from kafka import KafkaConsumer, TopicPartition

    tps = [TopicPartition(t, p) for (t, p), e in end.items() if e > 0]
    if not tps:
        return {}
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers(),
        group_id=None,
        enable_auto_commit=False,
        client_id="ep-verify-baseline",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    decoder = EnvelopeDecoder()
    best: dict[str, Position] = {}
    deadline = time.monotonic() + timeout_s
    stop = {tp: end[(tp.topic, tp.partition)] for tp in tps}
    try:
        begin = consumer.beginning_offsets(tps)
        window = 16
        todo = list(tps)
        while todo and time.monotonic() < deadline:
            consumer.assign(todo)
            for tp in todo:
                consumer.seek(tp, max(int(begin.get(tp) or 0), stop[tp] - window))
            open_tps = set(todo)
            while open_tps and time.monotonic() < deadline:
                for tp, messages in consumer.poll(timeout_ms=500).items():
                    for m in messages:
                        if m.offset >= stop[tp]:
                            continue
                        try:
                            ev = decoder.decode(m.key, m.value)
                        except (MalformedEvent, ValueError, TypeError):
                            # Undecodable (e.g. a value converter failing on Debezium's
                            # unavailable-value placeholder): the offset still counts.
                            continue
                        if ev is None:
                            continue
                        key = position_key(tp.topic, tp.partition)
                        if key not in best or ev.position > best[key]:
                            best[key] = ev.position
                for tp in list(open_tps):
                    if consumer.position(tp) >= stop[tp]:
                        open_tps.discard(tp)
            # A window of only tombstones or undecodable records: look further back.
            todo = [
                tp
                for tp in todo
                if position_key(tp.topic, tp.partition) not in best
                and stop[tp] - window > int(begin.get(tp) or 0)
            ]
            window *= 8
    finally:
        consumer.close()
    return {
        position_key(tp.topic, tp.partition): Applied(
            stop[tp] - 1, best.get(position_key(tp.topic, tp.partition), NO_POSITION)
        )
        for tp in tps
    }


def write_positions(db: Any, positions: dict[str, Applied]) -> None:
    """Store marks in the consumer's format (``MongoSink.save_positions``)."""
    from event_processor.consumer.writer import Mark, chunked, position_ops

    marks = {k: Mark(a.offset, a.position) for k, a in positions.items()}
    for ops in chunked(position_ops(marks), 16):
        db[POSITIONS_COLLECTION].bulk_write(ops, ordered=False)


def reset_read_model(settings: Settings, timeout_s: float = 60.0, quiet_s: float = 0.5) -> Baseline:
    """Empty the read model and mark everything already captured as applied.

    Call it with no consumer running, after the source was truncated: waits until
    Debezium has put every captured change on Kafka, drops every collection of the
    read model (``_ep_positions`` included), stores the last position of every change
    partition as the consumer's positions, and commits the default consumer group's
    offsets at the end of the change topics (its next consumer starts there).
    """
    import psycopg2
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata
    from pymongo import MongoClient

    started = time.monotonic()
    deadline = started + timeout_s
    baseline = Baseline()
    conn = psycopg2.connect(settings.postgres_dsn(), application_name="ep-verify-reset")
    conn.autocommit = True
    progress = KafkaProgress(settings, settings.consumer_group)
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongodb_uri(), serverSelectionTimeoutMS=5000
    )
    try:
        status, _ = wait_for_drain(
            settings, conn, progress, deadline, quiet_s=quiet_s, require_lag_zero=False
        )
        if not status.drained:
            raise TimeoutError(f"change topics did not settle: {status.detail}")
        snap = progress.snapshot()
        baseline.end_offsets = dict(snap.end)
        db = client[settings.mongo_database]
        for name in db.list_collection_names():
            if not name.startswith("system."):
                db.drop_collection(name)
                baseline.dropped.append(name)
        baseline.positions = last_positions(
            settings, snap.end, max(5.0, deadline - time.monotonic())
        )
        write_positions(db, baseline.positions)
        offsets = {
            TopicPartition(t, p): OffsetAndMetadata(e, "", -1) for (t, p), e in snap.end.items()
        }
        if offsets:
            progress.admin.alter_group_offsets(settings.consumer_group, offsets)
    finally:
        progress.close()
        conn.close()
        client.close()
    baseline.seconds = time.monotonic() - started
    return baseline
