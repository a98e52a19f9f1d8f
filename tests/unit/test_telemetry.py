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
