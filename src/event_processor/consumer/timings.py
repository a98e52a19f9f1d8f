"""Publishing timing records so a harness in another process can collect all of them.

One Kafka message per processed batch (a compact JSON array of rows) keeps the cost
per event to a few microseconds; records from several consumer processes meet in one
topic, which a collector reads from the offset it noted at the start of a run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from event_processor.metrics.timing import TimingRecord


@dataclass(frozen=True, slots=True)
class TimingBatch:
    """What every event of one consumer batch shares: T3, T4, T5 and the consumer.

    A batch's message carries them once, and per event only table, op, key, tx_id,
    lsn, T0, T1, T2, partition, offset (``EVENT_COLUMNS``): ~40 % fewer bytes for
    the producer to copy and send than whole rows, which was most of the harness's
    own cost at full speed.
    """

    t3_us: int
    t4_us: int
    t5_us: int
    consumer: str

    def records(self, rows: list[list[Any]]) -> list[TimingRecord]:
        t3, t4, t5, c = self.t3_us, self.t4_us, self.t5_us, self.consumer
        return [
            TimingRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], t3, t4, t5, r[8], r[9], c)
            for r in rows
        ]


EVENT_COLUMNS = ("table", "op", "key", "tx_id", "lsn", "t0_us", "t1_us", "t2_us",
                 "partition", "offset")  # fmt: skip


class TimingPublisher:
    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def publish_batch(self, batch: TimingBatch, rows: list[list[Any]]) -> None:
        """One consumer batch: shared stamps once, then rows of ``EVENT_COLUMNS``."""
        if rows:
            shared = [batch.t3_us, batch.t4_us, batch.t5_us, batch.consumer]
            self.producer.send(self.topic, value=orjson.dumps({"b": shared, "r": rows}))


class TopicTail:
    """Reads one topic from a noted start (every partition, no consumer group)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            group_id=None,
            # A reader of stamps already taken, not on any measured path: let the broker
            # gather up to 100 ms of records per fetch. With fetch_min_bytes=1 it answered
            # each timing message on its own, hundreds of fetches a second at load.
            fetch_min_bytes=1024 * 1024,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._ensure_topic()
        self.partitions = [
            TopicPartition(topic, p)
            for p in sorted(self.consumer.partitions_for_topic(topic) or {0})
        ]
        self.consumer.assign(self.partitions)

    def _ensure_topic(self) -> None:
        """Create the topic (broker defaults) when it does not exist yet.

        Reading a topic that does not exist would leave us on a guessed partition 0,
        and the first producer would then create it with the broker's partition count:
        on a fresh cluster a reader missed two of three dead letters that way.
        """
        import time

        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        if self.consumer.partitions_for_topic(self.topic):
            return
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(self.topic, -1, -1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()
        for _ in range(100):
            self.consumer.topics()  # refresh metadata
            if self.consumer.partitions_for_topic(self.topic):
                return
            time.sleep(0.1)

    def mark_end(self) -> dict[TopicPartition, int]:
        """The current end offsets: collect from here to see only a new run's records."""
        ends: dict[TopicPartition, int] = self.consumer.end_offsets(self.partitions)
        return ends

    def seek(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, off in offsets.items():
            self.consumer.seek(tp, off)

    def messages(self, timeout_ms: int = 200) -> list[Any]:
        batches: dict[Any, Any] = self.consumer.poll(timeout_ms=timeout_ms, max_records=10000)
        return [m for messages in batches.values() for m in messages]

    def close(self) -> None:
        self.consumer.close()


class TimingCollector(TopicTail):
    """Reads timing records published by every consumer process, from a noted start."""

    def poll(self, timeout_ms: int = 200) -> Iterator[TimingRecord]:
        for m in self.messages(timeout_ms):
            doc = orjson.loads(m.value)
            yield from TimingBatch(*doc["b"]).records(doc["r"])
