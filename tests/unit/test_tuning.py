"""Sweep knob parsing, the capacity rate controller, its step verdict and the report parts."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from event_processor.cli import build_parser, main
from event_processor.cli.options import resolve_scenario
from event_processor.cli.tuning import resolve_p99
from event_processor.errors import ConfigError
from event_processor.metrics.timing import SendRecord, TimingRecord
from event_processor.perf.capacity import (
    RateSearch,
    StepFigures,
    backlog_curve,
    backlog_growth,
    search,
    step_figures,
    step_verdict,
)
from event_processor.perf.harness import harness_cost
from event_processor.perf.knobs import (
    CONNECTOR,
    CONSUMER,
    check_setting,
    field_updates,
    grid,
    label,
    lookup,
    parse_knob,
    parse_knobs,
)
from event_processor.perf.sweep import run_name
from event_processor.report.html import render_standalone
from event_processor.report.schema import (
    CapacitySection,
    CapacityStep,
    Configuration,
    SweepPoint,
    SweepSection,
    build_document,
    parse_document,
    to_json,
)

pytestmark = pytest.mark.unit


# --- knobs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "field", "target"),
    [
        ("poll.interval.ms", "poll_interval_ms", CONNECTOR),
        ("max.batch.size", "max_batch_size", CONNECTOR),
        ("max.queue.size", "max_queue_size", CONNECTOR),
        ("linger.ms", "producer_linger_ms", CONNECTOR),
        ("producer.override.linger.ms", "producer_linger_ms", CONNECTOR),
        ("consumer.max.poll.records", "consumer_max_poll_records", CONSUMER),
        ("max.poll.records", "consumer_max_poll_records", CONSUMER),
        ("mongo.ops.per.command", "mongo_ops_per_command", CONSUMER),
        ("mongo.write.concurrency", "mongo_write_concurrency", CONSUMER),
        ("POLL.INTERVAL.MS", "poll_interval_ms", CONNECTOR),
        ("poll_interval_ms", "poll_interval_ms", CONNECTOR),
    ],
)
def test_knob_names_and_aliases(name: str, field: str, target: str) -> None:
    knob = lookup(name)
    assert (knob.field, knob.target) == (field, target)
    assert knob.env == f"EP_{field.upper()}"


def test_parse_knob_values_in_order_without_duplicates() -> None:
    knob, values = parse_knob("poll.interval.ms= 5, 1,500,5")
    assert knob.name == "poll.interval.ms"
    assert values == [5, 1, 500]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("nope=1", "unknown knob 'nope'"),
        ("poll.interval.ms", "is not NAME=v1,v2"),
        ("=1,2", "is not NAME=v1,v2"),
        ("poll.interval.ms=1,fast", "'fast' is not a whole number"),
        ("poll.interval.ms=", "'' is not a whole number"),
        ("poll.interval.ms=1.5", "'1.5' is not a whole number"),
        ("poll.interval.ms=0", "0 is below its minimum 1"),
        ("linger.ms=-1", "-1 is below its minimum 0"),
    ],
)
def test_bad_knob_is_one_line_error(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_knob(text)
    line = err.value.one_line()
    assert line.startswith("sweep: ") and fragment in line and "\n" not in line


def test_parse_knobs_needs_one_and_rejects_repeats() -> None:
    with pytest.raises(ConfigError, match="no knob"):
        parse_knobs([])
    with pytest.raises(ConfigError, match="given twice"):
        parse_knobs(["linger.ms=1", "producer.override.linger.ms=5"])


def test_grid_is_the_cartesian_product_first_knob_slowest() -> None:
    parsed = parse_knobs(["poll.interval.ms=1,500", "mongo.write.concurrency=1,2,4"])
    settings = grid(parsed)
    assert len(settings) == 6
    assert settings[0] == {"poll.interval.ms": 1, "mongo.write.concurrency": 1}
    assert settings[2] == {"poll.interval.ms": 1, "mongo.write.concurrency": 4}
    assert settings[3] == {"poll.interval.ms": 500, "mongo.write.concurrency": 1}
    assert label(settings[3]) == "poll.interval.ms=500 mongo.write.concurrency=1"
    assert field_updates(settings[3]) == {"poll_interval_ms": 500, "mongo_write_concurrency": 1}
    assert run_name("moderate", settings[3], 2, 3) == (
        "moderate@poll.interval.ms=500,mongo.write.concurrency=1#2"
    )
    assert run_name("moderate", settings[3], 1, 1) == (
        "moderate@poll.interval.ms=500,mongo.write.concurrency=1"
    )


def test_queue_must_stay_above_batch() -> None:
    base = {"max_batch_size": 2048, "max_queue_size": 8192}
    check_setting({"max.batch.size": 4096}, base)
    with pytest.raises(ConfigError, match=r"must be larger than max\.batch\.size"):
        check_setting({"max.batch.size": 8192}, base)
    with pytest.raises(ConfigError, match="must be larger"):
        check_setting({"max.queue.size": 1000}, base)


def test_sweep_cli_rejects_bad_input_before_touching_the_stack(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["sweep", "--knob", "poll.interval.ms=abc", "--scenario", "moderate"])
    err = capsys.readouterr().err
    assert code == 2
    assert "sweep: poll.interval.ms: 'abc' is not a whole number" in err
    assert "Traceback" not in err
    code = main(["sweep", "--knob", "poll.interval.ms=1", "--events", "10"])
    assert code == 2
    assert "sweep: no scenario given" in capsys.readouterr().err


def test_resolve_scenario_names_the_component() -> None:
    args = argparse.Namespace(scenario="moderate", events=5, rate=None, slo=[], seed=None,
                              warmup=None, timeout=None)  # fmt: skip
    with pytest.raises(ConfigError) as err:
        resolve_scenario(args, component="sweep")
    assert err.value.one_line().startswith("sweep: give either --scenario")


def test_capacity_cli_parses_and_checks_p99() -> None:
    args = build_parser().parse_args(["capacity", "--start", "50", "--max", "400"])
    assert (args.start, args.maximum, args.duration) == (50.0, 400.0, 10.0)
    assert resolve_p99("150") == 150.0
    assert resolve_p99("0.25s") == 250.0
    assert resolve_p99(None) > 0
    with pytest.raises(ConfigError, match="capacity: --p99 'fast'"):
        resolve_p99("fast")


# --- the rate controller --------------------------------------------------------------------


def _drive(controller: RateSearch, capacity: float) -> list[float]:
    steps = search(lambda rate: (rate <= capacity, None), controller)
    return [rate for rate, _ok, _ in steps]


def test_ramps_geometrically_then_bisects() -> None:
    controller = RateSearch(start=250, maximum=8000, precision=0.1)
    rates = _drive(controller, capacity=3000)
    assert rates[:5] == [250, 500, 1000, 2000, 4000]  # x2 until the first bad step
    assert rates[5] == 3000  # midway between last good (2000) and first bad (4000)
    assert all(2000 < r < 4000 for r in rates[5:])
    assert controller.capacity >= 3000 and controller.bad is not None
    assert controller.bad - controller.capacity <= 0.1 * controller.capacity
    assert controller.capacity <= 3000


def test_stops_at_max_when_every_step_is_good() -> None:
    controller = RateSearch(start=100, maximum=700)
    assert _drive(controller, capacity=10_000) == [100, 200, 400, 700]
    assert controller.capacity == 700
    assert controller.next_rate() is None


def test_ramps_down_when_the_first_rate_is_too_much() -> None:
    controller = RateSearch(start=1000, maximum=8000, precision=0.1)
    rates = _drive(controller, capacity=180)
    assert rates[:4] == [1000, 500, 250, 125]
    assert 160 <= controller.capacity <= 180


def test_nothing_sustainable_gives_zero() -> None:
    controller = RateSearch(start=8, maximum=100, minimum=1)
    rates = _drive(controller, capacity=0)
    assert rates == [8, 4, 2, 1]
    assert controller.capacity == 0.0


def test_step_budget_bounds_the_search() -> None:
    controller = RateSearch(start=1, maximum=1e9, max_steps=5)
    assert len(_drive(controller, capacity=1e9)) == 5


def test_a_failure_below_a_pass_searches_lower() -> None:
    controller = RateSearch(start=100, maximum=1000)
    controller.record(100, True)
    controller.record(200, False)
    assert controller.next_rate() == 150
    controller.record(150, False)
    controller.record(100, False)  # the earlier pass at 100 was luck
    assert controller.good is None
    assert controller.next_rate() == 50


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"start": 0, "maximum": 10}, "--start"), ({"start": 10, "maximum": 5}, "--max (5)")],
)
def test_bad_search_bounds(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        RateSearch(**kwargs)


# --- the step verdict -----------------------------------------------------------------------


def _figures(**changes: object) -> StepFigures:
    base = {
        "rate": 500.0,
        "events": 5000,
        "rows_per_event": 2.0,
        "p50_ms": 20.0,
        "p95_ms": 60.0,
        "p99_ms": 90.0,
        "applied_rate": 490.0,
        "applied_row_rate": 980.0,
        "sent_rate": 500.0,
        "backlog_mid": 20.0,
        "backlog_end": 21.0,
        "backlog_growth": 0.4,
        "schedule_lag_p99_ms": 1.0,
        "delivered": True,
        "integrity_ok": True,
        "committed_rows": 10_000,
        "applied_rows": 10_000,
    }
    base.update(changes)
    return StepFigures(**base)  # type: ignore[arg-type]


def test_a_steady_step_is_good() -> None:
    assert step_verdict(_figures(), 200) == (True, [])


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"p99_ms": 250.0}, "p99 250.0 ms > 200 ms"),
        ({"applied_rate": 400.0}, "applied 400/s < 90% of 500/s"),
        ({"backlog_growth": 80.0}, "backlog grew 80 rows/s (limit 50)"),
        ({"delivered": False, "applied_rows": 9000}, "only 9000 of 10000 row changes"),
        ({"integrity_ok": False}, "integrity verifier failed"),
        ({"sent_rate": 300.0}, "the generator fell behind"),
    ],
)
def test_each_criterion_can_fail_a_step(changes: dict[str, object], fragment: str) -> None:
    ok, reasons = step_verdict(_figures(**changes), 200)
    assert not ok
    assert any(fragment in r for r in reasons), reasons


def test_backlog_flat_when_the_consumer_keeps_up() -> None:
    t0 = np.arange(0, 10_000_000, 1000)  # 1,000 rows/s for 10 s
    t5 = t0 + 50_000  # each applied 50 ms later
    seconds, backlog = backlog_curve(t0, t5, 400)
    mid, end, growth = backlog_growth(seconds, backlog)
    assert 45 <= mid <= 55 and 45 <= end <= 55
    assert abs(growth) < 5


def test_backlog_grows_when_the_consumer_falls_behind() -> None:
    t0 = np.arange(0, 10_000_000, 1000)  # 1,000 rows/s offered
    t5 = np.arange(0, 10_000) * 1250 + 20_000  # applied at 800 rows/s
    _seconds, backlog = backlog_curve(t0, t5, 400)
    _mid, _end, growth = backlog_growth(_seconds, backlog)
    assert 150 < growth < 250  # ~200 rows/s: well above 5 % of 1,000


def _send(seq: int, rate: float, rows: int = 2) -> SendRecord:
    at = int(seq * 1e6 / rate)
    return SendRecord(seq=seq, tx_id=1000 + seq, kind="order_placed", intended_us=at,
                      sent_us=at + 100, committed_us=at + 1000, rows=rows)  # fmt: skip


def _timing(send: SendRecord, row: int, latency_us: int) -> TimingRecord:
    t0 = send.committed_us
    return TimingRecord(table="orders", op="c", key=f"{send.tx_id}-{row}", tx_id=send.tx_id,
                        lsn=send.tx_id * 10 + row, t0_us=t0, t1_us=t0 + 1, t2_us=t0 + 2,
                        t3_us=t0 + 3, t4_us=t0 + 4, t5_us=t0 + latency_us, partition=0,
                        offset=send.seq * 2 + row, consumer="c")  # fmt: skip


def test_step_figures_from_raw_records() -> None:
    rate = 200.0
    sends = [_send(i, rate) for i in range(400)]  # 2 s at 200/s, 2 rows each
    timings = [_timing(s, r, 30_000) for s in sends for r in range(2)]
    timings.append(timings[0])  # a redelivery is counted once
    f = step_figures(rate, sends, timings, p50_ms=30, p95_ms=30, p99_ms=30,
                     delivered=True, integrity_ok=True)  # fmt: skip
    assert f.rows_per_event == 2.0 and f.row_rate == 400.0
    assert f.committed_rows == 800 and f.applied_rows == 800
    assert 190 <= f.applied_rate <= 200
    assert 195 <= f.sent_rate <= 201
    assert abs(f.backlog_growth) < 0.05 * f.row_rate
    assert f.curve and f.curve[0][0] == 0.0
    assert step_verdict(f, 200)[0]


def test_harness_cost_percentages() -> None:
    metrics = {"ep_instrumentation_seconds_total": 0.02, "ep_batch_processing_seconds_total": 1.0}
    cost = harness_cost(metrics, consumer_cpu_s=2.0, collector_cpu_s=0.1, dashboard=True)
    assert cost.instrumentation_pct == 2.0 and cost.collector_pct == 5.0 and cost.dashboard
    empty = harness_cost({}, None, 0.1)
    assert empty.instrumentation_pct is None and empty.collector_pct is None


# --- the report sections --------------------------------------------------------------------


def test_sweep_and_capacity_sections_round_trip_and_render() -> None:
    points = [
        SweepPoint(
            setting={"poll.interval.ms": v},
            label=f"poll.interval.ms={v}",
            scenario=f"moderate@poll.interval.ms={v}",
            p50_ms=p50,
            p95_ms=p50 * 2,
            p99_ms=p50 * 3,
            throughput_eps=400,
            success_rate=1.0,
            delivered=True,
            integrity_ok=True,
            slo_passed=v == 1,
            harness_cost_pct=1.5,
        )
        for v, p50 in ((1, 20.0), (500, 300.0))
    ]
    sweep = SweepSection(scenario="moderate", events=100, rate=200, repeat=1,
                         knobs={"poll.interval.ms": [1, 500]},
                         original={"poll.interval.ms": 1}, points=points)  # fmt: skip
    step = CapacityStep(rate=500, row_rate=1000, events=5000, scenario="capacity@500/s",
                        p50_ms=20, p95_ms=50, p99_ms=90, applied_rate=490,
                        applied_row_rate=980, sent_rate=500, backlog_mid=20, backlog_end=21,
                        backlog_growth=0.4, schedule_lag_p99_ms=1, delivered=True,
                        integrity_ok=True, good=True, backlog_curve=[(0.0, 1.0)])  # fmt: skip
    capacity = CapacitySection(capacity_rate=500, capacity_row_rate=1000, first_bad_rate=None,
                               limited_by="reached --max", p99_slo_ms=200, duration_s=10,
                               start=250, maximum=500, criteria={"x": 1.0},
                               steps=[step])  # fmt: skip
    doc = build_document([], Configuration())
    doc.sweep, doc.capacity = sweep, capacity
    back = parse_document(to_json(doc))
    assert back.sweep == sweep and back.capacity == capacity
    page = render_standalone(back)
    assert 'id="sweep"' in page and 'id="capacity"' in page
    assert "poll.interval.ms=500" in page and "Highest sustained rate: 500" in page
    assert page.count("data:image/png;base64,") == 2
