"""Waiting until the pipeline has drained: everything committed in PostgreSQL is in the
read model.

Three conditions, checked in order against one deadline:

1. Debezium has read the WAL up to where it was when the wait began: the slot's
   walsender reports ``sent_lsn >= pg_current_wal_flush_lsn()`` taken at the start
   (pg_stat_replication; skipped when the slot is not visible, e.g. an external stack
   without the privilege).
2. The consumer group's lag over the change topics (``settings.change_topic_pattern()``,
   without those of tables the verifier skips, ``verify.compare.SKIPPED_TABLES``) is
   zero: committed offsets == end offsets on every partition (a partition without a
   committed offset lags by all its records). The consumer commits only after MongoDB
   acknowledged the batch, so lag zero means applied.
3. Quiet: end offsets and committed offsets stay the same for ``quiet_s`` with lag zero,
   so events Debezium still held between the WAL and Kafka have had time to appear.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from typing import Any

from event_processor.settings import Settings
from event_processor.verify.report import DrainStatus


def parse_lsn(text: str | None) -> int | None:
    """'16/B374D848' -> integer LSN."""
    if not text:
        return None
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


@dataclass(frozen=True, slots=True)
class KafkaSnapshot:
    end: dict[tuple[str, int], int]
    committed: dict[tuple[str, int], int]
    lag: int
    lagging: list[tuple[str, int, int]]  # (topic, partition, lag), biggest first

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        return (tuple(sorted(self.end.items())), tuple(sorted(self.committed.items())))


class KafkaProgress:
    """End offsets of the change topics and a group's committed offsets."""

    def __init__(self, settings: Settings, group: str) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        from event_processor.verify.compare import SKIPPED_TABLES

        self.group = group
        self.pattern = re.compile(settings.change_topic_pattern())
        # Topics of tables the verifier skips: the read model need not have applied them.
        self.skipped = {f"{settings.topic_prefix}.public.{t}" for t in SKIPPED_TABLES}
        servers = settings.kafka_servers()
        self.consumer = KafkaConsumer(
            bootstrap_servers=servers,
            group_id=None,
            enable_auto_commit=False,
            client_id="ep-verify",
            request_timeout_ms=10_000,
        )
        self.admin = KafkaAdminClient(
            bootstrap_servers=servers, client_id="ep-verify-admin", request_timeout_ms=10_000
        )

    def snapshot(self) -> KafkaSnapshot:
        from kafka import TopicPartition

        topics = sorted(
            t for t in self.consumer.topics() if self.pattern.match(t) and t not in self.skipped
        )
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(self.consumer.partitions_for_topic(t) or ())
        ]
        if not tps:
            return KafkaSnapshot({}, {}, 0, [])
        end = self.consumer.end_offsets(tps)
        begin = self.consumer.beginning_offsets(tps)
        offsets = self.admin.list_group_offsets({self.group: None}).get(self.group, {})
        committed: dict[tuple[str, int], int] = {}
        for tp, meta in offsets.items():
            off = getattr(meta, "offset", meta)
            if isinstance(off, int) and off >= 0:
                committed[(tp.topic, tp.partition)] = off
        lag = 0
        lagging = []
        ends: dict[tuple[str, int], int] = {}
        for tp in tps:
            key = (tp.topic, tp.partition)
            e = int(end.get(tp) or 0)
            ends[key] = e
            pos = committed.get(key, int(begin.get(tp) or 0))
            behind = max(0, e - pos)
            if behind:
                lag += behind
                lagging.append((tp.topic, tp.partition, behind))
        lagging.sort(key=lambda x: -x[2])
        return KafkaSnapshot(ends, committed, lag, lagging)

    def close(self) -> None:
        for client in (self.consumer, self.admin):
            with contextlib.suppress(Exception):  # closing is best effort
                client.close()


_SLOT_SQL = """
SELECT s.active, r.sent_lsn::text
FROM pg_replication_slots s
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = %s
"""


def wal_target(conn: Any) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_flush_lsn()::text")
        row = cur.fetchone()
    return str(row[0])


def slot_progress(conn: Any, slot: str) -> tuple[bool, bool, str | None]:
    """(slot exists, slot active, walsender's sent_lsn or None)."""
    with conn.cursor() as cur:
        cur.execute(_SLOT_SQL, (slot,))
        row = cur.fetchone()
    if row is None:
        return False, False, None
    return True, bool(row[0]), row[1]


def _wait_wal(
    settings: Settings, conn: Any, status: DrainStatus, deadline: float, notes: list[str]
) -> bool:
    """Condition 1: Debezium's walsender has sent the WAL up to the flush LSN of now."""
    target = wal_target(conn)
    status.target_lsn = target
    target_n = parse_lsn(target) or 0
    while True:
        exists, active, sent = slot_progress(conn, settings.slot_name)
        status.sent_lsn = sent
        if not exists:
            notes.append(f"replication slot {settings.slot_name} not found: WAL check skipped")
            return True
        sent_n = parse_lsn(sent)
        if sent_n is not None and sent_n >= target_n:
            return True
        if active and sent is None:
            notes.append("walsender progress not visible: WAL check skipped")
            return True
        if time.monotonic() >= deadline:
            state = "active" if active else "INACTIVE (is the connector running?)"
            status.detail = (
                f"Debezium has not read the WAL up to {target} (slot {settings.slot_name} "
                f"{state}, sent {sent or '-'})"
            )
            return False
        time.sleep(0.05)


def wait_for_drain(
    settings: Settings,
    conn: Any,
    progress: KafkaProgress,
    deadline: float,
    quiet_s: float = 1.0,
    poll_s: float = 0.1,
    require_lag_zero: bool = True,
) -> tuple[DrainStatus, tuple[Any, ...] | None]:
    """Wait until drained or the deadline; returns the status and the Kafka fingerprint.

    ``conn`` is an autocommit PostgreSQL connection. With ``require_lag_zero=False``
    only conditions 1 and 3 (on end offsets) apply: everything captured is on Kafka.
    """
    started = time.monotonic()
    status = DrainStatus(group=progress.group)
    notes: list[str] = []
    if not _wait_wal(settings, conn, status, deadline, notes):
        status.seconds = time.monotonic() - started
        return status, None

    last: tuple[Any, ...] | None = None
    since = 0.0
    while True:
        snap = progress.snapshot()
        status.lag = snap.lag
        status.partitions = len(snap.end)
        fp = snap.fingerprint if require_lag_zero else (tuple(sorted(snap.end.items())),)
        now = time.monotonic()
        if snap.lag == 0 or not require_lag_zero:
            if fp != last:
                last, since = fp, now
            elif now - since >= quiet_s:
                status.drained = True
                what = (
                    f"lag 0 on {len(snap.end)} partitions"
                    if require_lag_zero
                    else (f"end offsets of {len(snap.end)} partitions stable")
                )
                status.detail = "; ".join([*notes, what])
                status.seconds = now - started
                return status, fp
        else:
            last = None
        if now >= deadline:
            if snap.lag and require_lag_zero:
                worst = ", ".join(f"{t}[{p}] {n}" for t, p, n in snap.lagging[:3])
                status.detail = (
                    f"consumer group {progress.group} lags {snap.lag} record(s): {worst}"
                )
            else:
                status.detail = "change topics still moving at the deadline"
            status.seconds = now - started
            return status, fp
        time.sleep(poll_s)
