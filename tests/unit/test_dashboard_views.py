"""Dashboard views rendered to text from snapshots of synthetic runs."""

from __future__ import annotations

import dataclasses
import io
import re

import pytest
from rich.console import Console, RenderableType

from event_processor.dashboard.views import (
    BLOCKS,
    Sparkline,
    breach_words,
    breakdown_view,
    compact_line,
    counters_view,
    format_elapsed,
    format_ms,
    header_view,
    latency_cell,
    latency_view,
    p99_view,
    recent_view,
    render_dashboard,
    slo_breaches,
    slo_level,
    slo_style,
    sparkline,
    table_op_view,
    throughput_level,
    throughput_view,
)
from event_processor.metrics.live import LiveMetrics, MetricsSnapshot
from event_processor.metrics.timing import SendRecord, TimingRecord

pytestmark = pytest.mark.unit

BASE_S = 1_700_000_000
BASE_US = BASE_S * 1_000_000
NOW_S = BASE_S + 20.5


def make_timing(
    seq: int, e2e_us: int, t5_us: int, *, table: str = "orders", op: str = "c"
) -> TimingRecord:
    """Stages split ``e2e_us`` 10/10/20/60 %; ``seq`` doubles as the transaction id."""
    t0 = t5_us - e2e_us
    t1 = t0 + e2e_us // 10
    t2 = t1 + e2e_us // 10
    t3 = t2 + e2e_us // 5
    return TimingRecord(table, op, f"key-{seq}", seq, seq, t0, t1, t2, t3, t3 + 10, t5_us)


def make_send(tx_id: int, kind: str) -> SendRecord:
    intended = BASE_US + tx_id
    return SendRecord(tx_id, kind, tx_id, intended, intended + 100, intended + 900, 1)


def run_snapshot(
    *,
    count: int = 640,
    slo_targets: dict[str, float] | None = None,
    target_events: int = 1000,
) -> MetricsSnapshot:
    """A 'stress' run: ``count`` events over the 10 s before NOW_S, e2e 1..64 ms.

    With 640 events: e2e p50 is 32 ms, p99 and max 64 ms; 64 events each second.
    """
    metrics = LiveMetrics(
        scenario="stress",
        target_events=target_events,
        slo_targets=slo_targets if slo_targets is not None else {"p50": 50, "p99": 200},
        wall_clock=lambda: NOW_S,
        monotonic=lambda: 0.0,
    )
    kinds = ("order_placed", "customer_signup")
    metrics.record_sends(make_send(i, kinds[i % 2]) for i in range(count))
    start_us = (BASE_S + 10) * 1_000_000
    step_us = 10_000_000 // count
    metrics.record_many(
        make_timing(
            i,
            (i % 64 + 1) * 1000,
            start_us + i * step_us,
            table="orders" if i % 4 else "customers",
            op="u" if i % 3 else "c",
        )
        for i in range(count)
    )
    metrics.set_consumer_lag(3)
    return metrics.snapshot()


def render(renderable: RenderableType, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(output, str)
    return output


# -- pure helpers ---------------------------------------------------------------


def test_sparkline_scales_from_zero_to_the_maximum() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == BLOCKS
    assert sparkline([0, 50, 100]) == "▁▅█"


def test_sparkline_marks_missing_seconds_with_a_blank() -> None:
    assert sparkline([None, 10.0, None, 5.0]) == " █ ▅"


def test_sparkline_keeps_the_newest_values_that_fit() -> None:
    assert sparkline([100, 0, 0, 100], width=2) == "▁█"
    assert sparkline([1, 2], width=0) == ""


def test_sparkline_of_nothing_is_flat() -> None:
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([]) == ""


@pytest.mark.parametrize(
    ("value", "target", "level"),
    [
        (10.0, None, "none"),
        (10.0, 100.0, "ok"),
        (80.0, 100.0, "ok"),
        (80.1, 100.0, "warn"),
        (99.9, 100.0, "warn"),
        (100.0, 100.0, "breach"),  # the gate passes only below the target
        (150.0, 100.0, "breach"),
    ],
)
def test_slo_level(value: float, target: float | None, level: str) -> None:
    assert slo_level(value, target) == level


@pytest.mark.parametrize(
    ("eps", "target", "level"),
    [(500.0, None, "none"), (500.0, 100.0, "ok"), (110.0, 100.0, "warn"), (100.0, 100.0, "breach")],
)
def test_throughput_level(eps: float, target: float | None, level: str) -> None:
    assert throughput_level(eps, target) == level


def test_slo_styles_are_traffic_lights() -> None:
    assert slo_style("ok") == "green"
    assert slo_style("warn") == "yellow"
    assert "red" in slo_style("breach")
    assert slo_style("none") == ""


def test_latency_cell_colour_follows_the_stage_target() -> None:
    snapshot = run_snapshot(slo_targets={"p50": 35, "p99": 60, "processing.p50": 1})
    e2e = snapshot.stage("end_to_end")

    assert latency_cell(snapshot, e2e, "p50").style == "yellow"  # 32 ms: above 80 % of 35
    assert latency_cell(snapshot, e2e, "p99").style == "bold red"  # 64 ms >= 60
    assert latency_cell(snapshot, e2e, "p95").style == ""  # no p95 target
    assert latency_cell(snapshot, snapshot.stage("processing"), "p50").style == "bold red"


def test_empty_stats_render_as_a_dash_without_colour() -> None:
    snapshot = LiveMetrics(slo_targets={"p50": 1}).snapshot()

    cell = latency_cell(snapshot, snapshot.stage("end_to_end"), "p50")

    assert (cell.plain, cell.style) == ("–", "dim")


def test_slo_breaches_names_the_exceeded_targets() -> None:
    snapshot = run_snapshot(slo_targets={"p50": 100, "p99": 60, "capture.max": 1})

    assert slo_breaches(snapshot) == ("end_to_end.p99", "capture.max")
    e2e, capture = snapshot.stage("end_to_end"), snapshot.stage("capture")
    assert breach_words(snapshot) == (
        f"e2e p99 {format_ms(e2e.p99_ms)} ms > 60 ms",
        f"capture max {format_ms(capture.max_ms)} ms > 1 ms",
    )


def test_formatting() -> None:
    assert format_ms(0.456) == "0.46"
    assert format_ms(12.34) == "12.3"
    assert format_ms(12345.6) == "12,346"
    assert format_elapsed(75) == "01:15"
    assert format_elapsed(3725) == "1:02:05"


# -- views ------------------------------------------------------------------------


def test_header_shows_scenario_progress_and_slo_status() -> None:
    text = render(header_view(run_snapshot()))

    assert "stress" in text
    assert "640/1,000 applied (64%)" in text
    assert "elapsed 00:00" in text
    assert "SLO: 2 met" in text
    assert "sent 640/1,000 events" in text


def test_header_reports_breached_slos() -> None:
    text = render(header_view(run_snapshot(slo_targets={"p99": 10})))

    p99 = run_snapshot().stage("end_to_end").p99_ms
    assert f"SLO breached: e2e p99 {format_ms(p99)} ms > 10 ms" in text


def test_header_without_target() -> None:
    text = render(header_view(run_snapshot(target_events=0)))

    assert "no target set" in text
    assert "640 applied" in text


def test_throughput_panel_has_rates_and_a_block_sparkline() -> None:
    snapshot = run_snapshot()

    text = render(throughput_view(snapshot))

    assert "now 64 avg 64 peak 64 rows/s" in text
    assert "█" in text
    assert "▁" in text  # the quiet seconds before the run


def test_p99_panel_shows_the_latest_second_and_target() -> None:
    text = render(p99_view(run_snapshot()))

    assert "now 64.0 ms" in text  # rank ceil(0.99 × 64) = 64 of 1..64 ms, as the report
    assert "SLO 200 ms" in text
    # Scaled to hold the SLO (200 ms × 1.1), which sits at the seventh block.
    assert "▁ 0 … █ 220 ms; SLO 200 ms = ▇, red at or above it" in text


def test_sparkline_points_on_the_wrong_side_of_the_slo_are_red() -> None:
    def red_blocks(line: Sparkline) -> list[str]:
        console = Console(file=io.StringIO(), width=20)
        [text] = list(line.__rich_console__(console, console.options))
        return [
            text.plain[span.start : span.end] for span in text.spans if span.style == "bold red"
        ]

    ceiling = Sparkline([10.0, 250.0, None, 300.0], style="magenta", target=200.0)
    assert ceiling.top() == 300.0
    assert red_blocks(ceiling) == ["▇", "█"]  # 250 and 300 ms; 10 ms and the gap are not
    floor = Sparkline([50.0, 150.0, 90.0], style="cyan", target=100.0, bad_below=True)
    assert red_blocks(floor) == ["▃", "▅"]  # 50 and 90 rows/s under a 100 rows/s target


def test_latency_table_lists_every_stage_with_percentiles() -> None:
    snapshot = run_snapshot()

    text = render(latency_view(snapshot))

    for label in ("capture T1−T0", "kafka T2−T1", "consumer lag T3−T2", "processing T5−T3"):
        assert label in text
    assert "generator schedule lag" in text
    e2e_line = next(line for line in text.splitlines() if "end-to-end" in line)
    e2e = snapshot.stage("end_to_end")
    assert "640" in e2e_line
    assert format_ms(e2e.p50_ms) in e2e_line
    assert format_ms(e2e.p99_ms) in e2e_line
    assert "64.0" in e2e_line  # max


def test_breakdown_tables() -> None:
    snapshot = run_snapshot()

    by_kind = render(breakdown_view(snapshot))
    by_table_op = render(table_op_view(snapshot))

    assert "order_placed" in by_kind
    assert "customer_signup" in by_kind
    assert "320" in by_kind
    assert "orders/u" in by_table_op
    assert "customers/c" in by_table_op


def test_breakdown_tables_say_when_they_are_empty() -> None:
    snapshot = LiveMetrics().snapshot()

    assert "no generator events yet" in render(breakdown_view(snapshot))
    assert "no events applied yet" in render(table_op_view(snapshot))
    assert "waiting for events" in render(recent_view(snapshot))


def test_recent_events_newest_first() -> None:
    snapshot = run_snapshot()

    text = render(recent_view(snapshot, limit=3))

    assert "key-639" in text
    assert "key-637" in text
    assert "key-636" not in text
    assert text.index("key-639") < text.index("key-638")
    assert "orders/u" in text


def test_counters() -> None:
    snapshot = dataclasses.replace(run_snapshot(), errors=2, dead_lettered=1)

    text = render(counters_view(snapshot))

    assert re.search(r"applied\s+640", text)
    assert re.search(r"errors\s+2", text)
    assert re.search(r"dlq\s+1", text)
    assert re.search(r"lag\s+3", text)
    assert re.search(r"broken\s+0", text)


def test_full_dashboard_renders_at_100_columns() -> None:
    text = render(render_dashboard(run_snapshot()))

    for needle in ("event-processor", "Throughput", "Latency (ms)", "By event type", "Recent"):
        assert needle in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "…" not in text.split("By event type")[1].split("Recent")[0]  # nothing truncated


def test_full_dashboard_stacks_breakdowns_when_narrow() -> None:
    text = render(render_dashboard(run_snapshot()), width=80)

    by_kind = text.index("By event type")
    by_table_op = text.index("By table/op")
    assert text.count("\n", by_kind, by_table_op) > 1  # on different lines


def test_empty_dashboard_renders() -> None:
    text = render(render_dashboard(LiveMetrics().snapshot()))

    assert "live" in text
    assert "SLO: none set" in text


# -- compact line -----------------------------------------------------------------


def test_compact_line() -> None:
    snapshot = run_snapshot()
    e2e = snapshot.stage("end_to_end")

    line = compact_line(snapshot)

    assert line == (
        f"[stress] 640/1000 applied | 64 rows/s | e2e p50 {e2e.p50_ms:.1f} "
        f"p95 {e2e.p95_ms:.1f} p99 {e2e.p99_ms:.1f} ms | errors 0 dlq 0 lag 3"
    )
    assert "\n" not in line


def test_compact_line_reports_breaches_and_broken_records() -> None:
    snapshot = dataclasses.replace(run_snapshot(slo_targets={"p99": 10}), broken=2)

    line = compact_line(snapshot)

    assert "| broken 2 |" in line
    p99 = snapshot.stage("end_to_end").p99_ms
    assert line.endswith(f"SLO breached: e2e p99 {format_ms(p99)} ms > 10 ms")


def test_compact_line_before_any_event() -> None:
    line = compact_line(LiveMetrics().snapshot())

    assert line == "[live] 0 applied | 0 rows/s | e2e - | errors 0 dlq 0 lag -"


def test_header_says_whether_the_load_is_offered_as_planned() -> None:
    assert "load as planned: schedule lag p99 0.10 ms" in render(header_view(run_snapshot()))
    late = LiveMetrics(scenario="stress", target_events=100, wall_clock=lambda: NOW_S,
                       monotonic=lambda: 0.0)  # fmt: skip
    # Every send 80 ms behind its intended time: above the 50 ms bound of metrics.validity.
    late.record_sends(
        SendRecord(i, "order_placed", i, BASE_US + i, BASE_US + i + 80_000, BASE_US + i + 81_000, 1)
        for i in range(100)
    )
    text = render(header_view(late.snapshot()))
    assert "INVALID load: schedule lag p99 80.1 ms > 50 ms" in text
