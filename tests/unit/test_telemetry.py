"""The consumer's stage histograms and timing messages: one-by-one and vectorised
recording agree, and a batch message expands to the records it stands for."""

from __future__ import annotations

import random

import pytest

from event_processor.consumer.telemetry import VECTOR_MIN_ROWS, ConsumerTelemetry
from event_processor.consumer.timings import EVENT_COLUMNS, TimingBatch
from event_processor.metrics.timing import TimingRecord

pytestmark = pytest.mark.unit

BATCH = TimingBatch(2_000_000, 2_000_100, 2_003_000, "c")


def _rows(n: int, seed: int) -> list[list[object]]:
    """Rows of EVENT_COLUMNS; some stages negative: both paths clamp them at zero."""
    rng = random.Random(seed)
    rows: list[list[object]] = []
    for i in range(n):
        t0 = 1_000_000 + rng.randrange(10_000)
        t1 = t0 + rng.randrange(-500, 400_000)
        t2 = t1 + rng.randrange(-500, 400_000)
        rows.append(["orders", "u", str(i), i, i, t0, t1, t2, 0, i])
    return rows


def test_vectorised_batches_record_the_same_histograms_as_small_ones() -> None:
    rows = _rows(VECTOR_MIN_ROWS * 5, seed=3)
    one_by_one, vectorised = ConsumerTelemetry(0), ConsumerTelemetry(0)
    for i in range(0, len(rows), 8):  # batches below the threshold
        one_by_one.applied_batch(BATCH, rows[i : i + 8])
    vectorised.applied_batch(BATCH, rows)  # one batch above it
    assert one_by_one.stages._counts == vectorised.stages._counts
    assert one_by_one.stages._sums == vectorised.stages._sums
    assert sum(vectorised.stages._counts["end_to_end"]) == len(rows)


def test_histograms_match_the_records_a_batch_message_stands_for() -> None:
    rows = _rows(VECTOR_MIN_ROWS * 2, seed=5)
    assert len(rows[0]) == len(EVENT_COLUMNS)
    records = BATCH.records(rows)
    assert records[3] == TimingRecord.from_row([*rows[3][:8], 2_000_000, 2_000_100,
                                                2_003_000, 0, 3, "c"])  # fmt: skip
    telemetry = ConsumerTelemetry(0)
    telemetry.applied_batch(BATCH, rows)
    expected = {  # per-stage sums, each delta clamped at zero like the histograms
        "capture": sum(max(0, r.t1_us - r.t0_us) for r in records),
        "kafka": sum(max(0, r.t2_us - r.t1_us) for r in records),
        "consumer_lag": sum(max(0, r.t3_us - r.t2_us) for r in records),
        "processing": sum(max(0, r.t5_us - r.t3_us) for r in records),
        "end_to_end": sum(max(0, r.t5_us - r.t0_us) for r in records),
    }
    assert telemetry.stages._sums == expected
    assert all(sum(c) == len(rows) for c in telemetry.stages._counts.values())
