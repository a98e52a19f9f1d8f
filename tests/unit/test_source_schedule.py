"""The generator's pure parts: the fixed schedule, routing and pool sizing."""

from __future__ import annotations

import time

import pytest

from event_processor.source.generator import (
    MAX_CONNECTIONS,
    GeneratorError,
    Schedule,
    _partition,
    connections_for,
    run_load,
)
from event_processor.source.workload import WorkloadModel

pytestmark = pytest.mark.unit


def test_intended_times_are_i_over_rate_from_the_start() -> None:
    schedule = Schedule(rate=2000.0, anchor_wall_us=1_000_000, anchor_ns=5_000_000_000)
    assert [schedule.intended_us(i) for i in range(4)] == [1_000_000, 1_000_500, 1_001_000,
                                                           1_001_500]  # fmt: skip
    assert schedule.intended_us(10_000) - schedule.intended_us(0) == 5_000_000
    assert schedule.due_ns(3) == 5_000_000_000 + 1_500_000


def test_being_due_means_now_is_not_before_the_intended_time() -> None:
    schedule = Schedule.start_in(rate=3.0, lead_s=0.0)  # 333_333.3 µs spacing rounds
    for i in (1, 2, 5):
        now_ns = schedule.due_ns(i)
        assert schedule.anchor_wall_us + (now_ns - schedule.anchor_ns) // 1000 >= (
            schedule.intended_us(i)
        )


def test_the_schedule_starts_after_a_lead_in() -> None:
    before = time.perf_counter_ns()
    schedule = Schedule.start_in(rate=100.0, lead_s=0.05)
    assert schedule.due_ns(0) - before >= 50_000_000
    assert schedule.now_us() < schedule.intended_us(0)


def test_partition_keeps_each_customers_events_in_plan_order() -> None:
    plan = WorkloadModel(seed=2).plan(1000)
    shares = _partition(plan, 3)
    assert sum(len(s) for s in shares) == len(plan)
    for n, share in enumerate(shares):
        assert all(e.customer_id % 3 == n for _, e in share)
        assert [i for i, _ in share] == sorted(i for i, _ in share)


def test_pool_size_grows_with_the_rate() -> None:
    assert connections_for(10) == 1
    assert connections_for(100) == 1
    assert 2 <= connections_for(2000) <= MAX_CONNECTIONS
    assert connections_for(1e9) == MAX_CONNECTIONS


def test_rate_must_be_positive() -> None:
    with pytest.raises(GeneratorError):
        run_load("postgresql://unused", [], 0)
