"""Per-event timing records: the six stamps of one change event, and the generator's own.

Stamps that cross processes are host wall-clock microseconds since the epoch.
T2 comes from Kafka's LogAppendTime, which has millisecond resolution: a Kafka-stage
delta down to -999 µs is that rounding, not a broken run (see ``stage_deltas_us``).
"""

from __future__ import annotations

import time
from dataclasses import astuple, dataclass, fields

# Tolerance for the stage that involves the millisecond broker timestamp.
BROKER_TS_RESOLUTION_US = 1000

STAGES = ("capture", "kafka", "consumer_lag", "processing", "end_to_end")


def wall_us() -> int:
    """Host wall clock in microseconds (comparable across processes)."""
    return time.time_ns() // 1000


@dataclass(slots=True, frozen=True)
class TimingRecord:
    """The life of one change event from commit to MongoDB acknowledgement."""

    table: str
    op: str  # c, r, u, d, t
    key: str  # the read-model _id the event touched
    tx_id: int  # PostgreSQL transaction id (source.txId): joins with the generator
    lsn: int  # source.lsn: with table and key, the correlation id
    t0_us: int  # commit time reported by Debezium (source.ts_us)
    t1_us: int  # Debezium processed the event (top-level ts_us)
    t2_us: int  # broker append time (LogAppendTime, ms * 1000)
    t3_us: int  # received by the consumer (poll returned)
    t4_us: int  # transformed into a MongoDB write
    t5_us: int  # MongoDB acknowledged the write
    partition: int = -1
    offset: int = -1
    consumer: str = ""

    @property
    def correlation_id(self) -> str:
        return f"{self.table}:{self.key}:{self.lsn}"

    def to_row(self) -> list[object]:
        """Compact positional form for publishing (field order of the dataclass)."""
        # Spelled out (not dataclasses.astuple, which deep-copies): runs once per event.
        return [
            self.table, self.op, self.key, self.tx_id, self.lsn, self.t0_us, self.t1_us,
            self.t2_us, self.t3_us, self.t4_us, self.t5_us, self.partition, self.offset,
            self.consumer,
        ]  # fmt: skip

    @classmethod
    def from_row(cls, row: list[object] | tuple[object, ...]) -> TimingRecord:
        return cls(*row)

    def stage_deltas_us(self) -> dict[str, int]:
        """Per-stage durations in µs. Raises NegativeStageError on a broken run."""
        deltas = {
            "capture": self.t1_us - self.t0_us,
            "kafka": self.t2_us - self.t1_us,
            "consumer_lag": self.t3_us - self.t2_us,
            "processing": self.t5_us - self.t3_us,
            "end_to_end": self.t5_us - self.t0_us,
        }
        for stage, value in deltas.items():
            tolerance = BROKER_TS_RESOLUTION_US if stage in ("kafka", "consumer_lag") else 0
            if value < -tolerance:
                raise NegativeStageError(self, stage, value)
            if value < 0:
                deltas[stage] = 0  # within the broker stamp's millisecond rounding
        return deltas


TIMING_FIELDS = tuple(f.name for f in fields(TimingRecord))


class NegativeStageError(ValueError):
    """A stage took negative time: clocks or stamps are wrong, the run is broken."""

    def __init__(self, record: TimingRecord, stage: str, value_us: int) -> None:
        self.record = record
        self.stage = stage
        self.value_us = value_us
        super().__init__(
            f"negative {stage} delta of {value_us} µs for {record.correlation_id}: "
            "the run's timestamps are broken"
        )


@dataclass(slots=True, frozen=True)
class SendRecord:
    """The generator's view of one business event (one PostgreSQL transaction)."""

    seq: int
    kind: str  # e.g. customer_signup, order_placed
    tx_id: int
    intended_us: int  # when the open-loop schedule said to send it
    sent_us: int  # when the generator actually began it
    committed_us: int  # when COMMIT returned to the client
    rows: int  # row changes the transaction made

    @property
    def schedule_lag_us(self) -> int:
        return self.sent_us - self.intended_us

    @property
    def commit_us(self) -> int:
        return self.committed_us - self.sent_us

    def to_row(self) -> list[object]:
        return list(astuple(self))

    @classmethod
    def from_row(cls, row: list[object] | tuple[object, ...]) -> SendRecord:
        return cls(*row)
