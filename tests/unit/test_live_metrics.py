"""LiveMetrics: percentiles, series, joins and counters from synthetic timing records."""

from __future__ import annotations

import dataclasses
import random
import threading
from typing import Any

import pytest

from event_processor.errors import ConfigError
from event_processor.metrics.live import (
    MAX_GROUPS,
    OTHER_GROUP,
    LiveMetrics,
    MetricsSnapshot,
    canonical_slos,
    parse_slo_name,
)
from event_processor.metrics.percentiles import HISTOGRAM_HIGHEST_US
from event_processor.metrics.stats import summarize_run
from event_processor.metrics.timing import STAGES, SendRecord, TimingRecord

pytestmark = pytest.mark.unit

BASE_S = 1_700_000_000  # a fixed wall-clock second, so series tests are deterministic
BASE_US = BASE_S * 1_000_000


def make_timing(
    seq: int,
    e2e_us: int,
    *,
    t5_us: int | None = None,
    table: str = "orders",
    op: str = "c",
    tx_id: int | None = None,
) -> TimingRecord:
    """A record whose stages split ``e2e_us`` 10/10/20/60 % and end at ``t5_us``."""
    t5 = BASE_US + seq * 1000 if t5_us is None else t5_us
    t0 = t5 - e2e_us
    t1 = t0 + e2e_us // 10
    t2 = t1 + e2e_us // 10
    t3 = t2 + e2e_us // 5
    t4 = t3 + (t5 - t3) // 2
    return TimingRecord(
        table=table,
        op=op,
        key=f"k{seq}",
        tx_id=seq if tx_id is None else tx_id,
        lsn=seq,
        t0_us=t0,
        t1_us=t1,
        t2_us=t2,
        t3_us=t3,
        t4_us=t4,
        t5_us=t5,
    )


def make_send(tx_id: int, kind: str, *, rows: int = 1) -> SendRecord:
    intended = BASE_US + tx_id * 1000
    return SendRecord(
        seq=tx_id,
        kind=kind,
        tx_id=tx_id,
        intended_us=intended,
        sent_us=intended + 200,
        committed_us=intended + 1200,
        rows=rows,
    )


class FakeClocks:
    """Wall and monotonic clocks the test moves by hand."""

    def __init__(self, wall_s: float) -> None:
        self.wall_s = wall_s
        self.mono_s = 100.0

    def wall(self) -> float:
        return self.wall_s

    def mono(self) -> float:
        return self.mono_s


def metrics_at(wall_s: float, **kwargs: Any) -> tuple[LiveMetrics, FakeClocks]:
    clocks = FakeClocks(wall_s)
    return LiveMetrics(wall_clock=clocks.wall, monotonic=clocks.mono, **kwargs), clocks


# -- percentiles ------------------------------------------------------------


def test_end_to_end_percentiles_match_known_data() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    values_ms = list(range(1, 1001))
    random.Random(7).shuffle(values_ms)
    metrics.record_many(make_timing(i, ms * 1000) for i, ms in enumerate(values_ms))

    e2e = metrics.snapshot().stage("end_to_end")

    assert e2e.count == 1000
    # HdrHistogram at 3 significant digits: within 0.1 % of the exact rank value.
    assert e2e.p50_ms == pytest.approx(500, rel=1e-3)
    assert e2e.p95_ms == pytest.approx(950, rel=1e-3)
    assert e2e.p99_ms == pytest.approx(990, rel=1e-3)
    assert e2e.p999_ms == pytest.approx(999, rel=1e-3)
    assert e2e.max_ms == 1000.0  # exact, not a bucket edge
    assert e2e.mean_ms == pytest.approx(500.5)


def test_stage_histograms_use_the_stage_deltas() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    metrics.record_many(make_timing(i, 10_000) for i in range(50))

    snapshot = metrics.snapshot()

    assert [s.name for s in snapshot.stages] == list(STAGES)
    assert snapshot.stage("capture").p50_ms == pytest.approx(1.0, rel=1e-3)
    assert snapshot.stage("kafka").p50_ms == pytest.approx(1.0, rel=1e-3)
    assert snapshot.stage("consumer_lag").p50_ms == pytest.approx(2.0, rel=1e-3)
    assert snapshot.stage("processing").p50_ms == pytest.approx(6.0, rel=1e-3)
    assert snapshot.stage("end_to_end").p99_ms == pytest.approx(10.0, rel=1e-3)


def test_generator_stages_come_from_send_records() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    metrics.record_sends(make_send(i, "order_placed") for i in range(10))

    snapshot = metrics.snapshot()

    assert snapshot.stage("schedule_lag").p50_ms == pytest.approx(0.2, rel=1e-3)
    assert snapshot.stage("commit").p99_ms == pytest.approx(1.0, rel=1e-3)


def test_values_beyond_the_histogram_range_are_clamped_not_lost() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    metrics.record(make_timing(1, HISTOGRAM_HIGHEST_US + 5_000_000))

    e2e = metrics.snapshot().stage("end_to_end")

    assert e2e.count == 1
    assert e2e.max_ms == HISTOGRAM_HIGHEST_US / 1000


def test_a_negative_stage_is_counted_as_broken_and_kept_out() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    good = make_timing(1, 10_000)
    broken = dataclasses.replace(good, t1_us=good.t0_us - 5)  # capture ran backwards
    metrics.record_many([good, broken])

    snapshot = metrics.snapshot()

    assert snapshot.broken == 1
    assert snapshot.applied == 1
    assert snapshot.stage("end_to_end").count == 1


# -- series -----------------------------------------------------------------


def test_throughput_series_counts_applied_events_per_wall_second() -> None:
    metrics, _ = metrics_at(BASE_S + 10.5, window_s=10)
    for second, count in ((5, 3), (8, 7), (9, 4), (10, 2)):  # second 10 is still filling
        t5 = (BASE_S + second) * 1_000_000
        metrics.record_many(make_timing(i, 5000, t5_us=t5 + i) for i in range(count))

    snapshot = metrics.snapshot()

    assert len(snapshot.throughput_series) == 10
    assert snapshot.throughput_series[-5:] == (3, 0, 0, 7, 4)  # seconds 5..9
    assert snapshot.current_eps == 4.0  # the last complete second
    assert snapshot.applied == 16


def test_p99_series_uses_each_seconds_samples() -> None:
    metrics, _ = metrics_at(BASE_S + 3.2, window_s=3)
    t5 = (BASE_S + 1) * 1_000_000
    metrics.record_many(
        make_timing(i, ms * 1000, t5_us=t5 + i) for i, ms in enumerate(range(1, 101))
    )
    metrics.record(make_timing(999, 42_000, t5_us=(BASE_S + 2) * 1_000_000))

    series = metrics.snapshot().p99_series_ms

    assert series == (None, 99.0, 42.0)  # seconds 0, 1, 2


def test_p99_series_recomputes_a_second_that_gained_events() -> None:
    metrics, _ = metrics_at(BASE_S + 2.5, window_s=2)
    t5 = (BASE_S + 1) * 1_000_000
    metrics.record(make_timing(1, 10_000, t5_us=t5))
    assert metrics.snapshot().p99_series_ms[-1] == 10.0
    metrics.record(make_timing(2, 30_000, t5_us=t5 + 1))
    assert metrics.snapshot().p99_series_ms[-1] == 30.0


def test_old_seconds_scroll_out_of_the_window() -> None:
    metrics, clocks = metrics_at(BASE_S + 2.5, window_s=2)
    metrics.record(make_timing(1, 1000, t5_us=(BASE_S + 1) * 1_000_000))
    assert metrics.snapshot().throughput_series == (0, 1)
    clocks.wall_s += 5
    assert metrics.snapshot().throughput_series == (0, 0)


def test_average_rate_is_the_report_throughput() -> None:
    """One definition: applied / (last T5 - first T0), on the dashboard as in the report."""
    metrics, _ = metrics_at(BASE_S + 5)
    # 11 events 100 ms apart, each 5 ms from commit to ack: 11 in 1.005 s.
    timings = [make_timing(i, 5000, t5_us=BASE_US + i * 100_000) for i in range(11)]
    metrics.record_many(timings)

    report = summarize_run(timings, [], committed_rows=None)
    assert metrics.snapshot().average_eps == pytest.approx(11 / 1.005)
    assert metrics.snapshot().average_eps == pytest.approx(report.throughput_eps)


def test_rate_is_zero_before_any_event() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    assert metrics.snapshot().average_eps == 0.0
    metrics.record(make_timing(1, 5000))
    assert metrics.snapshot().average_eps == pytest.approx(1 / 0.005)


# -- breakdowns and recent events --------------------------------------------


def test_kind_breakdown_joins_send_records_by_tx_id() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    metrics.record_send(make_send(1, "order_placed", rows=2))
    metrics.record_send(make_send(2, "customer_signup"))
    metrics.record_many(
        [
            make_timing(10, 10_000, tx_id=1),
            make_timing(11, 20_000, tx_id=1, table="order_items"),
            make_timing(12, 5_000, tx_id=2, table="customers"),
        ]
    )

    rows = {row.label: row for row in metrics.snapshot().by_kind}

    assert rows["order_placed"].sent == 1
    assert rows["order_placed"].applied == 2
    assert rows["order_placed"].e2e.max_ms == 20.0
    assert rows["customer_signup"].applied == 1
    assert metrics.snapshot().unmatched == 0


def test_a_timing_that_overtakes_its_send_record_is_attributed_later() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    metrics.record(make_timing(10, 10_000, tx_id=7))
    assert metrics.snapshot().unmatched == 1
    assert metrics.snapshot().by_kind == ()

    metrics.record_send(make_send(7, "refund_issued"))

    snapshot = metrics.snapshot()
    assert snapshot.unmatched == 0
    (row,) = snapshot.by_kind
    assert (row.label, row.sent, row.applied) == ("refund_issued", 1, 1)
    assert row.e2e.p50_ms == pytest.approx(10.0, rel=1e-3)


def test_table_op_breakdown_is_busiest_first() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    metrics.record_many(make_timing(i, 1000, table="orders", op="u") for i in range(3))
    metrics.record_many(make_timing(i, 1000, table="customers", op="c") for i in range(3, 8))

    rows = metrics.snapshot().by_table_op

    assert [(r.label, r.applied) for r in rows] == [("customers/c", 5), ("orders/u", 3)]


def test_group_count_is_bounded() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    metrics.record_many(make_timing(i, 1000, table=f"t{i}") for i in range(MAX_GROUPS + 5))

    rows = metrics.snapshot().by_table_op

    assert len(rows) == MAX_GROUPS + 1
    assert {r.label: r.applied for r in rows}[OTHER_GROUP] == 5


def test_recent_events_are_newest_first_and_bounded() -> None:
    metrics, _ = metrics_at(BASE_S + 5, recent_size=3)
    metrics.record_send(make_send(4, "order_placed"))
    metrics.record_many(make_timing(i, (i + 1) * 1000) for i in range(5))

    recent = metrics.snapshot().recent

    assert [e.key for e in recent] == ["k4", "k3", "k2"]
    assert recent[0].e2e_ms == 5.0
    assert recent[0].processing_ms == pytest.approx(3.0)
    assert recent[0].kind == "order_placed"
    assert recent[1].kind == ""


# -- scenario, counters, SLOs ---------------------------------------------------


def test_scenario_progress_and_elapsed() -> None:
    metrics, clocks = metrics_at(BASE_S + 5)
    metrics.set_scenario("stress", 10)
    clocks.mono_s += 65
    metrics.record_sends(make_send(i, "order_placed", rows=2) for i in range(5))
    metrics.record_many(make_timing(i, 1000, tx_id=i // 2) for i in range(4))

    snapshot = metrics.snapshot()

    assert (snapshot.scenario, snapshot.target_events) == ("stress", 10)
    assert (snapshot.sent_events, snapshot.sent_rows, snapshot.applied) == (5, 10, 4)
    assert snapshot.expected_applied == 20  # 10 events x 2 rows each so far
    assert snapshot.progress == pytest.approx(0.2)
    assert snapshot.elapsed_s == pytest.approx(65.0)


def test_progress_without_generator_feed_counts_one_row_per_event() -> None:
    metrics, _ = metrics_at(BASE_S + 5, scenario="warmup", target_events=10)
    metrics.record_many(make_timing(i, 1000) for i in range(4))

    snapshot = metrics.snapshot()

    assert snapshot.expected_applied == 10
    assert snapshot.progress == pytest.approx(0.4)


def test_no_target_means_no_progress() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    assert metrics.snapshot().progress is None


def test_counters() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    assert metrics.snapshot().consumer_lag is None
    metrics.add_errors()
    metrics.add_errors(2)
    metrics.add_dead_lettered()
    metrics.set_consumer_lag(42)

    snapshot = metrics.snapshot()

    assert (snapshot.errors, snapshot.dead_lettered, snapshot.consumer_lag) == (3, 1, 42)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("p99", ("end_to_end", "p99")),
        (" p99 ", ("end_to_end", "p99")),
        ("MAX", ("end_to_end", "max")),
        ("capture.p95", ("capture", "p95")),
        ("consumer_lag_p99", ("consumer_lag", "p99")),
        ("e2e.p50", ("end_to_end", "p50")),
        ("schedule_lag.p999", ("schedule_lag", "p999")),
    ],
)
def test_slo_names(name: str, expected: tuple[str, str]) -> None:
    assert parse_slo_name(name) == expected


@pytest.mark.parametrize("name", ["p98", "captur.p99", "end_to_end", "latency", "p99.9"])
def test_misspelled_slo_names_are_errors(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown SLO name"):
        parse_slo_name(name)


def test_scenario_slos_keep_throughput_and_skip_integrity() -> None:
    slos = canonical_slos(
        {"p50": 30, "p99": 200, "throughput": 100, "success": 99.9, "integrity": 100}
    )

    assert slos.latency == (("end_to_end.p50", 30.0), ("end_to_end.p99", 200.0))
    assert slos.throughput_eps == 100.0


def test_slo_targets_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="must be > 0"):
        canonical_slos({"p99": 0})


def test_slo_targets_reach_the_snapshot() -> None:
    metrics, _ = metrics_at(BASE_S + 5, slo_targets={"p99": 200})
    metrics.set_slo_targets({"processing.p95": 10, "throughput": 50})

    snapshot = metrics.snapshot()

    assert snapshot.slo_target("processing", "p95") == 10.0
    assert snapshot.slo_target("end_to_end", "p99") is None  # replaced, not merged
    assert snapshot.throughput_target_eps == 50.0


# -- snapshot semantics and concurrency --------------------------------------


def test_snapshot_is_frozen_and_detached_from_later_records() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    metrics.record(make_timing(1, 1000))
    snapshot = metrics.snapshot()

    metrics.record(make_timing(2, 1000))

    assert snapshot.applied == 1
    assert snapshot.stage("end_to_end").count == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.applied = 5  # type: ignore[misc]


def test_reset_forgets_records_but_keeps_scenario_and_slos() -> None:
    metrics, _ = metrics_at(BASE_S + 5, scenario="stress", target_events=5, slo_targets={"p99": 1})
    metrics.record(make_timing(1, 1000))
    metrics.add_errors()

    metrics.reset()

    snapshot = metrics.snapshot()
    assert (snapshot.applied, snapshot.errors, snapshot.stage("end_to_end").count) == (0, 0, 0)
    assert snapshot.scenario == "stress"
    assert snapshot.slo_targets == (("end_to_end.p99", 1.0),)


def test_concurrent_recording_loses_nothing() -> None:
    metrics, _ = metrics_at(BASE_S + 5)
    per_thread = 3000
    snapshots: list[MetricsSnapshot] = []
    done = threading.Event()

    def consumer(offset: int) -> None:
        for i in range(offset, offset + per_thread):
            metrics.record(make_timing(i, 1000 + i % 500, tx_id=i))
            metrics.add_errors()

    def generator() -> None:
        metrics.record_sends(make_send(i, "order_placed") for i in range(2 * per_thread))

    def reader() -> None:
        while not done.is_set():
            snapshots.append(metrics.snapshot())

    workers = [
        threading.Thread(target=consumer, args=(0,)),
        threading.Thread(target=consumer, args=(per_thread,)),
        threading.Thread(target=generator),
    ]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    watcher.join()

    snapshot = metrics.snapshot()
    assert snapshot.applied == 2 * per_thread
    assert snapshot.errors == 2 * per_thread
    assert all(s.count == 2 * per_thread for s in snapshot.stages)
    (row,) = snapshot.by_kind
    assert (row.sent, row.applied, snapshot.unmatched) == (2 * per_thread, 2 * per_thread, 0)
    assert all(s.applied == s.stage("end_to_end").count for s in snapshots)


def test_record_cost(benchmark: Any) -> None:
    """record() is on the consumer's hot path (~5,000/s): measured, not asserted."""
    metrics, _ = metrics_at(BASE_S + 5)
    records = [make_timing(i, 1000 + i % 5000, tx_id=i) for i in range(1000)]
    metrics.record_sends(make_send(i, "order_placed") for i in range(1000))
    cycle = iter(records * 1000)

    benchmark(lambda: metrics.record(next(cycle)))
