"""The one percentile rule: hand-computed nearest ranks, and the live histogram, the
report and the plots agreeing on it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from event_processor.metrics.live import LiveMetrics
from event_processor.metrics.percentiles import (
    HISTOGRAM_HIGHEST_US,
    histogram_percentiles_us,
    nearest_rank,
    new_histogram,
    rank,
    ranks,
)
from event_processor.metrics.stats import LatencySummary
from event_processor.metrics.timing import TimingRecord

pytestmark = pytest.mark.unit


def test_nearest_rank_on_1_to_100() -> None:
    values = list(range(1, 101))
    assert nearest_rank(values, 50) == 50
    assert nearest_rank(values, 95) == 95
    assert nearest_rank(values, 99) == 99
    assert nearest_rank(values, 99.9) == 100  # rank ceil(99.9) = 100
    assert nearest_rank(values, 0) == 1
    assert nearest_rank(values, 100) == 100


def test_nearest_rank_exact_for_p999_of_1000() -> None:
    # 99.9/100*1000 is 999.0000000000001 in floats; the exact rank is 999.
    values = list(range(1, 1001))
    assert nearest_rank(values, 99.9) == 999


def test_nearest_rank_small_set() -> None:
    # n=5: p50 -> rank ceil(2.5)=3, p95 -> ceil(4.75)=5, p20 -> ceil(1.0)=1
    values = [10, 20, 30, 40, 50]
    assert nearest_rank(values, 50) == 30
    assert nearest_rank(values, 95) == 50
    assert nearest_rank(values, 20) == 10
    assert nearest_rank(values, 21) == 20


def test_nearest_rank_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        nearest_rank([], 50)
    with pytest.raises(ValueError):
        nearest_rank([1], 101)


def test_the_live_histogram_and_the_report_pick_the_same_rank() -> None:
    """n = 1,060 at p99: HdrHistogram's own rule reads rank 1,049, the report 1,050."""
    samples = list(range(1, 1061))  # µs, below 2,048: the histogram holds them exactly
    hist = new_histogram()
    for v in samples:
        hist.record_value(v)

    live = histogram_percentiles_us(hist, [50.0, 95.0, 99.0, 99.9])
    exact = [nearest_rank(samples, p) for p in (50.0, 95.0, 99.0, 99.9)]

    assert live == exact == [530, 1007, 1050, 1059]
    assert hist.get_value_at_percentile(99.0) == 1049  # why the live view needs the rule


def test_the_dashboard_and_the_report_print_the_same_percentiles() -> None:
    """The same run's records through LiveMetrics (dashboard) and LatencySummary (report)."""
    base_us = 1_700_000_000_000_000
    e2e_us = list(range(100, 100 + 1060))  # 0.100 .. 1.159 ms, exact in the histogram
    metrics = LiveMetrics(wall_clock=lambda: base_us / 1e6 + 5, monotonic=lambda: 0.0)
    for seq, e2e in enumerate(e2e_us):
        t0 = base_us + seq * 1000
        metrics.record(
            TimingRecord(
                table="orders", op="c", key=f"k{seq}", tx_id=seq, lsn=seq, t0_us=t0,
                t1_us=t0 + 10, t2_us=t0 + 20, t3_us=t0 + 30, t4_us=t0 + 40,
                t5_us=t0 + e2e,
            )
        )  # fmt: skip
    dashboard = metrics.snapshot().stage("end_to_end")
    report = LatencySummary.from_us(e2e_us)

    assert (dashboard.p50_ms, dashboard.p95_ms, dashboard.p99_ms, dashboard.p999_ms) == (
        report.p50,
        report.p95,
        report.p99,
        report.p999,
    )


def test_live_percentiles_are_within_the_histogram_precision() -> None:
    rng = random.Random(3)
    samples = sorted(rng.randint(1, HISTOGRAM_HIGHEST_US) for _ in range(5000))
    hist = new_histogram()
    for v in samples:
        hist.record_value(v)
    wanted = [0.5, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]

    live = histogram_percentiles_us(hist, wanted)

    for got, p in zip(live, wanted, strict=True):
        assert got == pytest.approx(nearest_rank(samples, p), rel=1e-3)


def test_percentiles_of_an_empty_histogram_are_zero() -> None:
    assert histogram_percentiles_us(new_histogram(), [50.0, 99.0]) == [0, 0]


def test_plot_ranks_follow_the_same_rule() -> None:
    n = 1060
    fractions = np.array([0.0, 0.5, 0.95, 0.99, 1.0])
    assert ranks(fractions, n).tolist() == [rank(100 * f, n) for f in fractions.tolist()]
