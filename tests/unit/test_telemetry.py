"""The consumer's stage histograms: one-by-one and vectorised recording agree."""

from __future__ import annotations

import random

import pytest

from event_processor.consumer.telemetry import VECTOR_MIN_ROWS, ConsumerTelemetry

pytestmark = pytest.mark.unit


def _rows(n: int, seed: int) -> list[list[object]]:
    rng = random.Random(seed)
    rows: list[list[object]] = []
    for i in range(n):
        t0 = 1_000_000 + rng.randrange(10_000)
        stamps = [t0]
        for _ in range(5):  # some stages negative: both paths clamp them at zero
            stamps.append(stamps[-1] + rng.randrange(-500, 400_000))
        rows.append(["orders", "u", str(i), i, i, *stamps, 0, i, "c"])
    return rows


def test_vectorised_batches_record_the_same_histograms_as_small_ones() -> None:
    rows = _rows(VECTOR_MIN_ROWS * 5, seed=3)
    one_by_one, vectorised = ConsumerTelemetry(0), ConsumerTelemetry(0)
    for i in range(0, len(rows), 8):  # batches below the threshold
        one_by_one.applied_rows(rows[i : i + 8])
    vectorised.applied_rows(rows)  # one batch above it
    assert one_by_one.stages._counts == vectorised.stages._counts
    assert one_by_one.stages._sums == vectorised.stages._sums
    assert sum(vectorised.stages._counts["end_to_end"]) == len(rows)


def test_batch_messages_expand_to_the_same_records_and_histograms() -> None:
    from event_processor.consumer.timings import EVENT_COLUMNS, TimingBatch
    from event_processor.metrics.timing import TimingRecord

    full = _rows(VECTOR_MIN_ROWS * 2, seed=5)
    t3, t4, t5 = 2_000_000, 2_000_100, 2_003_000
    for r in full:  # one batch: T3..T5 and the consumer are shared
        r[8], r[9], r[10], r[13] = t3, t4, t5, "c"
    batch = TimingBatch(t3, t4, t5, "c")
    compact = [r[:8] + r[11:13] for r in full]
    assert len(compact[0]) == len(EVENT_COLUMNS)
    assert batch.records(compact) == [TimingRecord.from_row(r) for r in full]
    for rows in (compact[:8], compact):  # below and above the vector threshold
        by_rows, by_batch = ConsumerTelemetry(0), ConsumerTelemetry(0)
        by_rows.applied_rows([[*r[:8], t3, t4, t5, *r[8:], "c"] for r in rows])
        by_batch.applied_batch(batch, rows)
        assert by_rows.stages._counts == by_batch.stages._counts
        assert by_rows.stages._sums == by_batch.stages._sums
