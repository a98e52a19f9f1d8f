"""DashboardRunner: Live on a terminal, compact lines elsewhere, SVG export."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from event_processor.dashboard.live import DashboardRunner
from event_processor.metrics.live import LiveMetrics
from event_processor.metrics.timing import TimingRecord, wall_us

pytestmark = pytest.mark.unit


def make_metrics(count: int = 5) -> LiveMetrics:
    metrics = LiveMetrics(scenario="demo", target_events=10, slo_targets={"p99": 100})
    now = wall_us()
    for i in range(count):
        t0 = now - 20_000 + i
        stamps = (t0, t0 + 1000, t0 + 2000, t0 + 3000, t0 + 3500, t0 + 12_000)  # e2e 12 ms
        metrics.record(TimingRecord("orders", "c", f"k{i}", i, i, *stamps))
    return metrics


def console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=100, color_system=None), out


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_non_terminal_prints_compact_lines_periodically_and_at_exit() -> None:
    metrics = make_metrics()
    con, out = console(terminal=False)

    with DashboardRunner(metrics, con, line_interval_s=0.02) as runner:
        assert not runner.interactive
        wait_for(lambda: out.getvalue().count("\n") >= 2)
        metrics.add_errors()

    lines = out.getvalue().splitlines()
    assert all(line.startswith("[demo] 5/10 applied") for line in lines)
    assert "errors 1" in lines[-1]  # the final line shows the final state


def test_non_terminal_output_has_no_dashboard_frames() -> None:
    con, out = console(terminal=False)

    with DashboardRunner(make_metrics(), con, line_interval_s=60):
        pass

    assert out.getvalue().count("\n") == 1  # just the line printed on exit
    assert "╭" not in out.getvalue()


def test_terminal_runs_rich_live_with_the_dashboard() -> None:
    con, out = console(terminal=True)

    with DashboardRunner(make_metrics(), con, refresh_per_second=20) as runner:
        assert runner.interactive
        time.sleep(0.15)

    text = out.getvalue()
    assert "event-processor" in text
    assert "Latency (ms)" in text
    assert "5/10 applied" in text


def test_start_and_stop_are_idempotent() -> None:
    con, out = console(terminal=False)
    runner = DashboardRunner(make_metrics(), con, line_interval_s=60)

    runner.start()
    runner.start()
    runner.stop()
    runner.stop()

    assert out.getvalue().count("\n") == 1


def test_render_errors_are_shown_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = make_metrics()

    def boom() -> None:
        raise RuntimeError("snapshot failed")

    monkeypatch.setattr(metrics, "snapshot", boom)
    renderable = DashboardRunner(metrics, console(terminal=False)[0]).render()

    assert isinstance(renderable, Text)
    assert "snapshot failed" in renderable.plain


def test_invalid_rates_are_rejected() -> None:
    with pytest.raises(ValueError):
        DashboardRunner(make_metrics(), refresh_per_second=0)
    with pytest.raises(ValueError):
        DashboardRunner(make_metrics(), line_interval_s=-1)


def test_export_svg(tmp_path: Path) -> None:
    runner = DashboardRunner(make_metrics(), console(terminal=False)[0])

    path = runner.export_svg(tmp_path / "docs" / "dashboard.svg")

    svg = path.read_text(encoding="utf-8")
    assert path == tmp_path / "docs" / "dashboard.svg"
    assert svg.startswith("<svg")
    assert "event-processor" in svg
    assert "Latency" in svg
    assert "#" in svg.split("<style>")[-1]  # styled: colours survive the export


def test_frame_cost(benchmark: Any) -> None:
    """One dashboard frame (snapshot + render at 120 columns) with 20,000 events recorded:
    the live view's cost is this times its refresh rate (measured, not asserted; the
    README quotes it)."""
    from event_processor.dashboard.views import render_dashboard

    metrics = make_metrics(20_000)
    sink = Console(file=io.StringIO(), force_terminal=True, width=120, color_system="truecolor")

    def frame() -> None:
        sink.print(render_dashboard(metrics.snapshot()))

    benchmark(frame)
    assert sink.file.tell() > 0
