"""Run statistics: summaries, dedupe, warm-up, throughput, the intended-time figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import TypeAdapter

from event_processor.metrics.stats import (
    LatencySummary,
    dedupe,
    drop_warmup,
    summarize_run,
)
from event_processor.metrics.timing import NegativeStageError, SendRecord, TimingRecord

pytestmark = pytest.mark.unit

BASE = 1_700_000_000_000_000  # a wall-clock µs origin


def rec(
    tx: int,
    key: str,
    *,
    t0: int = 0,
    stages: tuple[int, int, int, int] = (1000, 1000, 1000, 1000),
    table: str = "orders",
    op: str = "c",
    lsn: int | None = None,
) -> TimingRecord:
    """A record whose stamps are t0 plus the capture, kafka, lag, processing µs."""
    capture, kafka, lag, processing = stages
    t1 = BASE + t0 + capture
    t2 = t1 + kafka
    t3 = t2 + lag
    t5 = t3 + processing
    return TimingRecord(
        table, op, key, tx, lsn if lsn is not None else tx * 100 + len(key),
        BASE + t0, t1, t2, t3, t3 + processing // 2, t5,
    )  # fmt: skip


def send(seq: int, tx: int, kind: str = "order_placed", rows: int = 1) -> SendRecord:
    intended = BASE + seq * 10_000
    return SendRecord(
        seq, kind, tx, intended, intended + 100 * seq, intended + 100 * seq + 500, rows
    )


def test_summary_from_us_in_ms() -> None:
    # 1..100 ms given as µs, shuffled: the summary must sort.
    samples = [v * 1000 for v in range(100, 0, -1)]
    s = LatencySummary.from_us(samples)
    assert s == LatencySummary(
        count=100, min=1.0, mean=50.5, p50=50.0, p95=95.0, p99=99.0, p999=100.0, max=100.0
    )


def test_summary_with_an_outlier() -> None:
    # 999 fast events at 2 ms and one at 500 ms: p99 stays 2 ms, p99.9 = rank 999 = 2 ms,
    # only max shows the outlier; the mean moves by 0.498 ms.
    samples = [2000] * 999 + [500_000]
    s = LatencySummary.from_us(np.array(samples))
    assert (s.p50, s.p99, s.p999, s.max) == (2.0, 2.0, 2.0, 500.0)
    assert s.mean == pytest.approx(2.498)


def test_empty_summary_is_all_zero_with_count_zero() -> None:
    assert LatencySummary.from_us([]) == LatencySummary()
    assert LatencySummary().count == 0


def test_summary_round_trips_through_the_report_schema() -> None:
    s = LatencySummary.from_us([1500, 2500, 3500])
    read = TypeAdapter(LatencySummary).validate_python(json.loads(json.dumps(s.to_dict())))
    assert read == s
    assert s.mean == 2.5 and s.p50 == 2.5


# --- summarize_run -------------------------------------------------------------------


def test_summarize_run_figures() -> None:
    # Two sends; tx 1 writes two rows, tx 2 one row. Stage µs are chosen by hand.
    timings = [
        rec(1, "a", t0=0, stages=(2000, 1000, 500, 1500)),  # e2e 5000
        rec(1, "b", t0=0, stages=(2000, 1000, 500, 3500), table="order_lines"),  # 7000
        rec(2, "c", t0=10_000, stages=(4000, 1000, 1000, 4000), op="u"),  # 10000, T5=20000
    ]
    sends = [send(0, 1, "order_placed", rows=2), send(1, 2, "order_paid", rows=1)]
    st = summarize_run(timings, sends, committed_rows=4)

    assert st.events == 2
    assert st.applied == 3
    assert st.committed == 4
    assert st.success_rate == pytest.approx(0.75)
    # 3 events from first T0 (0) to last T5 (20 000 µs) = 150 events/s
    assert st.throughput_eps == pytest.approx(150.0)
    assert st.duration_s == pytest.approx(0.02)
    assert st.end_to_end.count == 3
    assert (st.end_to_end.min, st.end_to_end.p50, st.end_to_end.max) == (5.0, 7.0, 10.0)
    assert st.stages["capture"].p50 == 2.0
    assert st.stages["processing"].max == 4.0
    assert st.stages["kafka"].mean == 1.0
    assert set(st.by_table_op) == {"orders:c", "order_lines:c", "orders:u"}
    assert st.by_table_op["orders:u"].p50 == 10.0
    # a send's latency spans its transaction: max T5 - min T0
    assert st.by_kind["order_placed"].max == 7.0
    assert st.by_kind["order_paid"].max == 10.0
    assert st.unmatched_sends == 0
    # schedule lag = 100 µs * seq, commit time = 500 µs
    assert (st.schedule_lag.min, st.schedule_lag.max) == (0.0, 0.1)
    assert st.commit_time.p50 == 0.5


def test_summarize_run_to_dict_is_json() -> None:
    st = summarize_run([rec(1, "a")], [send(0, 1)], committed_rows=1)
    data = json.loads(json.dumps(st.to_dict()))
    assert data["e2e_ms"]["p99"] == 4.0
    assert set(data["stages_ms"]) == {"capture", "kafka", "consumer_lag", "processing"}
    assert data["success_rate"] == 1.0
    assert data["by_kind"]["order_placed"]["count"] == 1
    assert "schedule_lag_ms" in data and "commit_ms" in data


def test_negative_stage_raises() -> None:
    broken = rec(1, "a", stages=(-5, 1000, 1000, 1000))
    with pytest.raises(NegativeStageError, match="capture"):
        summarize_run([rec(2, "b"), broken], [], committed_rows=2)


def test_broker_millisecond_rounding_is_not_broken() -> None:
    # T2 has ms resolution: a kafka delta of -999 µs is rounding, clamped to 0.
    st = summarize_run([rec(1, "a", stages=(2000, -999, 1999, 1000))], [], None)
    assert st.stages["kafka"].max == 0.0


def test_committed_defaults_to_generator_rows() -> None:
    st = summarize_run([rec(1, "a")], [send(0, 1, rows=2)], committed_rows=None)
    assert st.committed == 2
    assert st.success_rate == 0.5


def test_unknown_committed_gives_no_success_rate() -> None:
    st = summarize_run([rec(1, "a")], [], committed_rows=None)
    assert st.committed is None and st.success_rate is None


def test_unmatched_sends_are_counted_not_timed() -> None:
    st = summarize_run([rec(1, "a")], [send(0, 1), send(1, 99, "lost")], committed_rows=2)
    assert st.unmatched_sends == 1
    assert "lost" not in st.by_kind


def test_duplicates_keep_the_first_ack() -> None:
    first = rec(1, "a", lsn=7, stages=(1000, 1000, 1000, 1000))
    again = rec(1, "a", lsn=7, stages=(1000, 1000, 1000, 9000))  # redelivered later
    records, duplicates = dedupe([again, first])
    assert duplicates == 1 and records == [first]
    st = summarize_run([first, again], [send(0, 1)], committed_rows=1)
    assert st.applied == 1 and st.duplicates == 1 and st.end_to_end.max == 4.0


def test_warmup_events_are_dropped_with_their_rows() -> None:
    timings = [rec(1, "a", stages=(50_000, 0, 0, 0)), rec(2, "b"), rec(3, "c")]
    sends = [send(0, 1, rows=1), send(1, 2, rows=1), send(2, 3, rows=1)]
    kept_t, kept_s, dropped_rows = drop_warmup(timings, sends, 1)
    assert [t.tx_id for t in kept_t] == [2, 3]
    assert [s.seq for s in kept_s] == [1, 2]
    assert dropped_rows == 1
    st = summarize_run(timings, sends, committed_rows=3, warmup_events=1)
    assert st.events == 2 and st.committed == 2 and st.applied == 2
    assert st.end_to_end.max == 4.0  # the 50 ms cold event is gone


def test_empty_run() -> None:
    st = summarize_run([], [], committed_rows=0)
    assert st.applied == 0 and st.throughput_eps == 0.0
    assert st.end_to_end.count == 0
    assert st.success_rate is None


def test_latency_from_the_intended_send_counts_a_late_generator() -> None:
    """A send 50 ms behind its schedule: commit-to-ack latency cannot see it, the
    coordinated-omission-free figure (T5 - intended) does; unsent records are left out."""
    on_time = SendRecord(0, "order_placed", 1, BASE, BASE, BASE + 500, 1)
    late = SendRecord(1, "order_placed", 2, BASE + 10_000, BASE + 60_000, BASE + 60_500, 1)
    records = [
        rec(1, "a", t0=500),  # e2e 4 ms; from intended 4.5 ms
        rec(2, "b", t0=60_500),  # e2e 4 ms; from intended 54.5 ms
        rec(3, "c", t0=70_000),  # no send: not in the intended figure
    ]
    stats = summarize_run(records, [on_time, late], None)
    assert stats.end_to_end.max == pytest.approx(4.0)
    assert stats.from_intended.count == 2
    assert stats.from_intended.min == pytest.approx(4.5)
    assert stats.from_intended.max == pytest.approx(54.5)
    assert stats.to_dict()["e2e_from_intended_ms"]["max"] == pytest.approx(54.5)
