"""Rich views of a running pipeline: pure functions of a ``MetricsSnapshot``.

Nothing here reads a clock or a metric source, so every view can be rendered into a
``Console(file=StringIO())`` and checked as text. Latency cells are coloured against
the SLO targets: green up to ``WARN_RATIO`` of the target, yellow below the target,
red from the target on (the gates pass only below it), uncoloured where none applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from event_processor.metrics.live import LatencyStats, MetricsSnapshot
from event_processor.metrics.validity import MAX_SCHEDULE_LAG_P99_MS

SloLevel = Literal["none", "ok", "warn", "breach"]

BLOCKS = "▁▂▃▄▅▆▇█"
WARN_RATIO = 0.8
SLO_STYLES: dict[SloLevel, str] = {
    "none": "",
    "ok": "green",
    "warn": "yellow",
    "breach": "bold red",
}
STAGE_LABELS = {
    "capture": "capture T1−T0",
    "kafka": "kafka T2−T1",
    "consumer_lag": "consumer lag T3−T2",
    "processing": "processing T5−T3",
    "end_to_end": "end-to-end T5−T0",
    "schedule_lag": "generator schedule lag",
    "commit": "generator commit",
}
TABLE_STATS = ("p50", "p95", "p99", "p999", "max")
STAT_HEADERS = {"p50": "p50", "p95": "p95", "p99": "p99", "p999": "p99.9", "max": "max"}
NO_VALUE = "–"


# ---------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------


def sparkline(
    values: Sequence[float | None], width: int | None = None, top: float | None = None
) -> str:
    """Block-character sparkline of the newest ``width`` values, scaled from 0 to
    ``top`` (default: their max; a fixed top keeps an SLO at one height).

    ``None`` (no data that second) is a blank, so gaps stay visible.
    """
    if width is not None:
        if width <= 0:
            return ""
        values = values[-width:]
    if top is None:
        top = max((v for v in values if v is not None), default=0.0)
    last = len(BLOCKS) - 1

    def block(value: float | None) -> str:
        if value is None:
            return " "
        if top <= 0:
            return BLOCKS[0]
        return BLOCKS[round(min(max(value, 0.0) / top, 1.0) * last)]

    return "".join(block(v) for v in values)


def slo_level(value_ms: float, target_ms: float | None, warn_ratio: float = WARN_RATIO) -> SloLevel:
    """Where a latency stands against its upper-bound target (the gate is value < target)."""
    if target_ms is None:
        return "none"
    if value_ms >= target_ms:
        return "breach"
    if value_ms > target_ms * warn_ratio:
        return "warn"
    return "ok"


def throughput_level(
    eps: float, target_eps: float | None, warn_ratio: float = WARN_RATIO
) -> SloLevel:
    """Where a rate stands against its lower-bound target (the gate is eps > target)."""
    if target_eps is None:
        return "none"
    if eps <= target_eps:
        return "breach"
    if eps * warn_ratio < target_eps:
        return "warn"
    return "ok"


def slo_style(level: SloLevel) -> str:
    return SLO_STYLES[level]


def slo_breaches(snapshot: MetricsSnapshot) -> tuple[str, ...]:
    """Canonical names of the SLO targets the current numbers exceed."""
    breached = []
    for name, target in snapshot.slo_targets:
        stage, stat = name.split(".")
        stats = snapshot.stage(stage)
        if stats.count and slo_level(stats.value(stat), target) == "breach":
            breached.append(name)
    return tuple(breached)


# Short stage names for a breached-SLO line ("e2e p50 178 ms > 30 ms").
BREACH_NAMES = {"end_to_end": "e2e", "consumer_lag": "consumer lag"}


def breach_words(snapshot: MetricsSnapshot) -> tuple[str, ...]:
    """Each breached target in words: "e2e p50 178.0 ms > 30 ms"."""
    words = []
    targets = dict(snapshot.slo_targets)
    for name in slo_breaches(snapshot):
        stage, stat = name.split(".")
        value = snapshot.stage(stage).value(stat)
        label = BREACH_NAMES.get(stage, stage.replace("_", " "))
        words.append(f"{label} {stat} {format_ms(value)} ms > {targets[name]:g} ms")
    return tuple(words)


def format_ms(value: float) -> str:
    if value < 10:
        return f"{value:.2f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def format_elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def latency_cell(snapshot: MetricsSnapshot, stats: LatencyStats, stat: str) -> Text:
    """One latency value, coloured against the SLO on (stage, stat) if there is one."""
    if stats.count == 0:
        return Text(NO_VALUE, style="dim")
    value = stats.value(stat)
    target = snapshot.slo_target(stats.name, stat)
    return Text(format_ms(value), style=slo_style(slo_level(value, target)))


class Sparkline:
    """A sparkline that shows as many of the newest points as its width allows; with an
    SLO ``target`` it is scaled to hold the target and each point on the wrong side of
    it is red (``bad_below``: a floor, like a throughput target)."""

    def __init__(
        self,
        values: Sequence[float | None],
        style: str = "",
        target: float | None = None,
        bad_below: bool = False,
    ) -> None:
        self.values = values
        self.style = style
        self.target = target
        self.bad_below = bad_below

    def top(self) -> float:
        top = max((v for v in self.values if v is not None), default=0.0)
        return max(top, self.target * 1.1) if self.target is not None else top

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        shown = self.values[-options.max_width :] if options.max_width > 0 else []
        blocks = sparkline(shown, top=self.top())
        text = Text(no_wrap=True)
        for value, block in zip(shown, blocks, strict=True):
            bad = (
                self.target is not None
                and value is not None
                and (value < self.target if self.bad_below else value >= self.target)
            )
            text.append(block, style="bold red" if bad else self.style)
        yield text

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, max(1, len(self.values)))


class Responsive:
    """``wide`` when at least ``min_width`` columns are available, else ``narrow``."""

    def __init__(self, wide: RenderableType, narrow: RenderableType, min_width: int) -> None:
        self.wide = wide
        self.narrow = narrow
        self.min_width = min_width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.wide if options.max_width >= self.min_width else self.narrow


def _table(title: str, caption: str | None = None) -> Table:
    """Borderless table: two side by side fit in 100 columns, and it saves rows."""
    return Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        expand=True,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,  # one blank between columns, not three
    )


def side_by_side(*renderables: RenderableType, ratios: Sequence[int] = ()) -> Table:
    grid = Table.grid(expand=True, padding=(0, 2))
    for index in range(len(renderables)):
        grid.add_column(ratio=ratios[index] if index < len(ratios) else 1)
    grid.add_row(*renderables)
    return grid


# ---------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------


def header_view(snapshot: MetricsSnapshot) -> Panel:
    """Scenario, progress towards the expected applied rows, elapsed time, SLO status."""
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(justify="right", no_wrap=True)
    scenario = snapshot.scenario or "live"
    grid.add_row(
        Text.assemble(("scenario ", "dim"), (scenario, "bold cyan")),
        Text.assemble(("elapsed ", "dim"), format_elapsed(snapshot.elapsed_s)),
    )
    grid.add_row(_progress(snapshot), _progress_label(snapshot))
    grid.add_row(_slo_status(snapshot), _sent_label(snapshot))
    grid.add_row(_load_status(snapshot), Text(""))
    breached = bool(slo_breaches(snapshot))
    return Panel(grid, title="event-processor", border_style="red" if breached else "blue")


def _progress(snapshot: MetricsSnapshot) -> RenderableType:
    expected = snapshot.expected_applied
    if expected <= 0:
        return Text("no target set", style="dim")
    return ProgressBar(total=expected, completed=min(snapshot.applied, expected))


def _progress_label(snapshot: MetricsSnapshot) -> Text:
    expected = snapshot.expected_applied
    if expected <= 0:
        return Text(f"{snapshot.applied:,} applied")
    percent = (snapshot.progress or 0.0) * 100
    return Text(f"{snapshot.applied:,}/{expected:,} applied ({percent:.0f}%)")


def _sent_label(snapshot: MetricsSnapshot) -> Text:
    target = f"/{snapshot.target_events:,}" if snapshot.target_events > 0 else ""
    return Text.assemble(
        ("sent ", "dim"), f"{snapshot.sent_events:,}{target} events, {snapshot.sent_rows:,} rows"
    )


def _load_status(snapshot: MetricsSnapshot) -> Text:
    """Whether the generator keeps its schedule, by the rule of metrics.validity: a run
    whose schedule-lag p99 exceeds the bound is INVALID, whatever its latencies say."""
    lag = next((g for g in snapshot.generator if g.name == "schedule_lag"), None)
    if lag is None or lag.count == 0:
        return Text("load: nothing sent yet", style="dim")
    bound = MAX_SCHEDULE_LAG_P99_MS
    if lag.p99_ms > bound:
        return Text(f"INVALID load: schedule lag p99 {format_ms(lag.p99_ms)} ms > {bound:g} ms",
                    style="bold red", no_wrap=True, overflow="ellipsis")  # fmt: skip
    return Text(f"load as planned: schedule lag p99 {format_ms(lag.p99_ms)} ms", style="green")


def _slo_status(snapshot: MetricsSnapshot) -> Text:
    if not snapshot.slo_targets:
        return Text("SLO: none set", style="dim")
    breached = breach_words(snapshot)
    if breached:
        # Wrapped, never cut: the size of each miss is the point of the line.
        return Text(f"SLO breached: {'; '.join(breached)}", style="bold red", overflow="fold")
    return Text(f"SLO: {len(snapshot.slo_targets)} met", style="green")


def throughput_view(snapshot: MetricsSnapshot) -> Panel:
    series = snapshot.throughput_series
    target = snapshot.throughput_target_eps
    average_style = slo_style(throughput_level(snapshot.average_eps, target)) or "bold"
    summary = Text.assemble(
        ("now ", "dim"),
        (f"{snapshot.current_eps:,.0f}", "bold"),
        (" avg ", "dim"),
        (f"{snapshot.average_eps:,.0f}", average_style),
        (" peak ", "dim"),
        (f"{max(series, default=0):,}", "bold"),
        (" rows/s", "dim"),
        ("  SLO ", "dim") if target is not None else "",
        f"> {target:g}" if target is not None else "",
    )
    line = Sparkline(series, style="cyan", target=target, bad_below=True)
    body = Group(summary, line, _scale(line.top(), "rows/s", target, "below"))
    return Panel(
        body, title=f"Throughput, row changes applied/s (last {len(series)} s)", title_align="left"
    )


def _scale(top: float, unit: str, target: float | None, bad: str) -> Text:
    """The sparkline's scale in words: what a full block is, where the SLO sits."""
    words = f"{BLOCKS[0]} 0 … {BLOCKS[-1]} {top:,.0f} {unit}"
    if target is not None and top > 0:
        level = BLOCKS[round(min(target / top, 1.0) * (len(BLOCKS) - 1))]
        words += f"; SLO {target:g} {unit} = {level}, red {bad} it"
    return Text(words, style="dim", no_wrap=True, overflow="ellipsis")


def p99_view(snapshot: MetricsSnapshot) -> Panel:
    series = snapshot.p99_series_ms
    latest = next((v for v in reversed(series) if v is not None), None)
    target = snapshot.slo_target("end_to_end", "p99")
    style = slo_style(slo_level(latest, target)) if latest is not None else ""
    summary = Text.assemble(
        ("now ", "dim"),
        (format_ms(latest) if latest is not None else NO_VALUE, style or "bold"),
        (" ms", "dim"),
        ("  SLO ", "dim"),
        (f"{target:g} ms" if target is not None else NO_VALUE, ""),
    )
    line = Sparkline(series, style="magenta", target=target)
    body = Group(summary, line, _scale(line.top(), "ms", target, "at or above"))
    return Panel(body, title="End-to-end p99 per second", title_align="left")


def counters_view(snapshot: MetricsSnapshot) -> Panel:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim")
    grid.add_column(justify="right")
    grid.add_column(style="dim")
    grid.add_column(justify="right")
    lag = NO_VALUE if snapshot.consumer_lag is None else f"{snapshot.consumer_lag:,}"
    grid.add_row("applied", f"{snapshot.applied:,}", "lag", lag)
    grid.add_row("errors", _alarm(snapshot.errors), "dlq", _alarm(snapshot.dead_lettered))
    grid.add_row("broken", _alarm(snapshot.broken), "unmatched", f"{snapshot.unmatched:,}")
    return Panel(grid, title="Counters", title_align="left")


def _alarm(count: int) -> Text:
    """A count that should stay at zero: red as soon as it is not."""
    return Text(f"{count:,}", style="bold red" if count else "green")


def latency_view(snapshot: MetricsSnapshot) -> Table:
    table = _table(
        "Latency (ms)", caption=f"green ≤ {WARN_RATIO:.0%} of SLO, yellow < SLO, red ≥ SLO"
    )
    table.add_column("stage", no_wrap=True)
    table.add_column("n", justify="right")
    for stat in TABLE_STATS:
        table.add_column(STAT_HEADERS[stat], justify="right")
    for stats in snapshot.stages:
        _add_latency_row(table, snapshot, stats)
    table.add_section()
    for stats in snapshot.generator:
        _add_latency_row(table, snapshot, stats)
    return table


def _add_latency_row(table: Table, snapshot: MetricsSnapshot, stats: LatencyStats) -> None:
    cells = [latency_cell(snapshot, stats, stat) for stat in TABLE_STATS]
    style = "bold" if stats.name == "end_to_end" else ""
    table.add_row(STAGE_LABELS.get(stats.name, stats.name), f"{stats.count:,}", *cells, style=style)


def breakdown_view(snapshot: MetricsSnapshot, limit: int = 8) -> Table:
    """By generator event kind: volume and end-to-end latency."""
    table = _breakdown_table("By event type (e2e ms)", "event type", with_sent=True)
    for row in snapshot.by_kind[:limit]:
        table.add_row(
            row.label,
            f"{row.sent:,}",
            f"{row.applied:,}",
            *(latency_cell(snapshot, row.e2e, stat) for stat in ("p50", "p95", "p99")),
        )
    if not snapshot.by_kind:
        table.add_row(Text("no generator events yet", style="dim"))
    return table


def table_op_view(snapshot: MetricsSnapshot, limit: int = 8) -> Table:
    """By table and operation (c/u/d/r): what the read model actually received."""
    table = _breakdown_table("By table/op (e2e ms)", "table/op", with_sent=False)
    for row in snapshot.by_table_op[:limit]:
        table.add_row(
            row.label,
            f"{row.applied:,}",
            *(latency_cell(snapshot, row.e2e, stat) for stat in ("p50", "p95", "p99")),
        )
    if not snapshot.by_table_op:
        table.add_row(Text("no events applied yet", style="dim"))
    return table


def _breakdown_table(title: str, label: str, *, with_sent: bool) -> Table:
    table = _table(title)
    table.add_column(label, no_wrap=True, overflow="ellipsis", max_width=24)
    if with_sent:
        table.add_column("sent", justify="right")
    table.add_column("applied", justify="right")
    for stat in ("p50", "p95", "p99"):
        table.add_column(stat, justify="right")
    return table


def recent_view(snapshot: MetricsSnapshot, limit: int = 8) -> Table:
    table = _table("Recent events")
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("type", no_wrap=True, overflow="ellipsis", max_width=18)
    table.add_column("table/op", no_wrap=True, overflow="ellipsis", max_width=20)
    table.add_column("key", no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("e2e ms", justify="right")
    table.add_column("proc ms", justify="right")
    target = snapshot.slo_target("end_to_end", "p99")
    for event in snapshot.recent[:limit]:
        age_s = max(0.0, (snapshot.taken_us - event.applied_us) / 1_000_000)
        table.add_row(
            f"{age_s:.1f}s",
            event.kind or Text("?", style="dim"),
            f"{event.table}/{event.op}",
            event.key,
            Text(format_ms(event.e2e_ms), style=slo_style(slo_level(event.e2e_ms, target))),
            format_ms(event.processing_ms),
        )
    if not snapshot.recent:
        table.add_row("", Text("waiting for events", style="dim"))
    return table


def render_dashboard(
    snapshot: MetricsSnapshot, *, recent_limit: int = 8, breakdown_limit: int = 8
) -> RenderableType:
    return Group(
        side_by_side(header_view(snapshot), counters_view(snapshot), ratios=(2, 1)),
        side_by_side(throughput_view(snapshot), p99_view(snapshot)),
        latency_view(snapshot),
        _breakdowns(snapshot, breakdown_limit),
        recent_view(snapshot, recent_limit),
    )


def _breakdowns(snapshot: MetricsSnapshot, limit: int) -> Responsive:
    by_kind = breakdown_view(snapshot, limit)
    by_table_op = table_op_view(snapshot, limit)
    # Side by side each table gets half the width; below 100 columns that truncates.
    return Responsive(side_by_side(by_kind, by_table_op), Group(by_kind, by_table_op), 100)


def compact_line(snapshot: MetricsSnapshot) -> str:
    """One plain line for logs that are not a terminal (CI)."""
    expected = snapshot.expected_applied
    done = f"{snapshot.applied}/{expected}" if expected > 0 else f"{snapshot.applied}"
    e2e = snapshot.stage("end_to_end")
    latency = (
        f"e2e p50 {e2e.p50_ms:.1f} p95 {e2e.p95_ms:.1f} p99 {e2e.p99_ms:.1f} ms"
        if e2e.count
        else "e2e -"
    )
    lag = "-" if snapshot.consumer_lag is None else str(snapshot.consumer_lag)
    parts = [
        f"[{snapshot.scenario or 'live'}] {done} applied",
        f"{snapshot.current_eps:.0f} rows/s",
        latency,
        f"errors {snapshot.errors} dlq {snapshot.dead_lettered} lag {lag}",
    ]
    if snapshot.broken:
        parts.append(f"broken {snapshot.broken}")
    breached = breach_words(snapshot)
    if breached:
        parts.append(f"SLO breached: {'; '.join(breached)}")
    return " | ".join(parts)
