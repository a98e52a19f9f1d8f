"""The race: one workload through our consumer and through Debezium's MongoDB sink.

Both sinks read the same change topic (``<prefix>.public.race_events``) from consumer
groups of their own and write one document per row into the same MongoDB-wire store,
each into a database of its own. One watcher stamps the moment each row's document first
becomes visible in either database; latency is that moment minus the row's commit time
as Debezium reports it (``source.ts_us``), the T0 of every figure in this project.

This module holds the pure parts (connector config, figures, ratios, the table); the
run itself is in ``race.run``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from event_processor.metrics.stats import LatencySummary
from event_processor.report.schema import RaceResult, RaceSide
from event_processor.settings import Settings
from event_processor.source.schema import RACE_TABLE
from event_processor.stack.connect import JSON_CONVERTER

SINK_CONNECTOR_CLASS = "io.debezium.connector.mongodb.MongoDbSinkConnector"
SINK_CONNECTOR_NAME = "ep-race-debezium-sink"
OURS = "ours"
THEIRS = "debezium"
SIDES = (OURS, THEIRS)
DATABASES = {OURS: "ep_race_ours", THEIRS: "ep_race_debezium"}
LABELS = {OURS: "event-processor consumer", THEIRS: "Debezium MongoDB sink"}
RATIO_KEYS = ("throughput", "p50", "p95", "p99")


class RaceBrokenError(ValueError):
    """A figure that cannot be right (a document visible before its commit)."""


def race_topic(settings: Settings) -> str:
    return f"{settings.topic_prefix}.public.{RACE_TABLE}"


def sink_group(name: str = SINK_CONNECTOR_NAME) -> str:
    """The consumer group Kafka Connect gives a sink connector."""
    return f"connect-{name}"


def sink_connector_config(
    settings: Settings, topic: str, database: str, batch_size: int
) -> dict[str, str]:
    """Debezium's MongoDB sink for the race topic (Debezium 3.6 option names).

    The sink understands Debezium's change-event envelope itself (its relational event
    handler: c/r/u -> upsert-replace, d -> delete), so no ExtractNewRecordState is needed;
    the value keeps its schema (the source writes it) and the document ``_id`` is the
    record key, ``{"id": <pk>}``.
    """
    return {
        "connector.class": SINK_CONNECTOR_CLASS,
        "tasks.max": "1",
        "topics": topic,
        "mongodb.connection.string": settings.mongodb_uri(),
        "sink.database": database,
        # One collection named after the source table, as our consumer does.
        # A literal: schemaless values give the sink no ${source.table} to resolve.
        "collection.name.format": RACE_TABLE,
        # Documents per ordered bulk write (FerretDB: keep below its pool of 200).
        "batch.size": str(batch_size),
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",  # as the source writes them
        "errors.tolerance": "none",
    }


def redacted_config(config: Mapping[str, str]) -> dict[str, str]:
    """A connector config fit for a report: no connection string (it may hold secrets)."""
    return {k: v for k, v in config.items() if "connection" not in k}


def side_result(
    label: str,
    database: str,
    ids: Sequence[int],
    t0_us: Mapping[int, int],
    visible_us: Mapping[int, int],
) -> RaceSide:
    """Latency and throughput of one sink over the run's ``ids``.

    Latency is visible - T0 per row that has both stamps; throughput is the visible rows
    over the span from the first commit to the last document visible.
    """
    latencies = [visible_us[i] - t0_us[i] for i in ids if i in visible_us and i in t0_us]
    negative = [lat for lat in latencies if lat < 0]
    if negative:
        raise RaceBrokenError(
            f"{label}: {len(negative)} document(s) visible before their commit "
            f"(by up to {-min(negative) / 1000:.1f} ms): the host clock moved"
        )
    seen = [i for i in ids if i in visible_us]
    commits = [t0_us[i] for i in ids if i in t0_us]
    span_us = max(visible_us[i] for i in seen) - min(commits) if seen and commits else 0
    throughput = len(seen) * 1e6 / span_us if span_us > 0 else 0.0
    return RaceSide(
        label=label,
        database=database,
        visible=len(seen),
        latency_ms=LatencySummary.from_us(latencies),
        throughput_eps=round(throughput, 1),
        duration_s=round(span_us / 1e6, 3),
    )


def _ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 3) if theirs > 0 else None


def ratios(ours: RaceSide, theirs: RaceSide) -> dict[str, float | None]:
    """ours / theirs: throughput above 1 and latencies below 1 mean ours is faster."""
    out: dict[str, float | None] = {
        "throughput": _ratio(ours.throughput_eps, theirs.throughput_eps)
    }
    for key in RATIO_KEYS[1:]:
        out[key] = _ratio(getattr(ours.latency_ms, key), getattr(theirs.latency_ms, key))
    return out


def race_passed(events: int, sides: Mapping[str, RaceSide]) -> bool:
    return all(s.visible == events and s.latency_ms.count == events for s in sides.values())


def latency_samples_ms(
    ids: Sequence[int], t0_us: Mapping[int, int], visible_us: Mapping[int, int]
) -> list[float]:
    """The per-row latencies in ms (for the percentile plot)."""
    return [(visible_us[i] - t0_us[i]) / 1000 for i in ids if i in visible_us and i in t0_us]


def _ms(value: float) -> str:
    return f"{value:.1f}"


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def race_table(race: RaceResult) -> Table:
    """Both sinks side by side, and the ratios ours/theirs."""
    verdict = "[green]all visible[/]" if race.passed else "[red]NOT all visible[/]"
    table = Table(
        title=f"race: {race.events} rows at {race.rate:g}/s, commit -> document visible "
        f"({race.probe}, poll {race.poll_interval_ms:g} ms): {verdict}"
    )
    for col in ("sink", "visible", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms",
                "rows/s"):  # fmt: skip
        table.add_column(col, justify="left" if col == "sink" else "right")
    for side in race.sides.values():
        s = side.latency_ms
        table.add_row(
            side.label,
            f"{side.visible}/{race.events}",
            _ms(s.p50),
            _ms(s.p95),
            _ms(s.p99),
            _ms(s.p999),
            _ms(s.max),
            f"{side.throughput_eps:.1f}",
        )
    r = race.ratios
    table.add_row(
        "ratio ours/theirs",
        "",
        _ratio_text(r.get("p50")),
        _ratio_text(r.get("p95")),
        _ratio_text(r.get("p99")),
        "",
        "",
        _ratio_text(r.get("throughput")),
    )
    return table


def assemble(
    *,
    events: int,
    rate: float,
    timeout_s: float,
    topic: str,
    probe: str,
    poll_interval_ms: float,
    ids: Sequence[int],
    t0_us: Mapping[int, int],
    visible_us: Mapping[str, Mapping[int, int]],
    schedule_lag_us: Sequence[int] = (),
    sink_config: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> RaceResult:
    """The race's result entry from the raw stamps."""
    sides = {
        side: side_result(LABELS[side], DATABASES[side], ids, t0_us, visible_us.get(side, {}))
        for side in SIDES
    }
    return RaceResult(
        events=events,
        rate=rate,
        timeout_s=timeout_s,
        table=RACE_TABLE,
        topic=topic,
        probe=probe,
        poll_interval_ms=poll_interval_ms,
        sides=sides,
        ratios=ratios(sides[OURS], sides[THEIRS]),
        schedule_lag_ms=LatencySummary.from_us(schedule_lag_us),
        sink_config=redacted_config(sink_config or {}),
        notes=list(notes),
        passed=race_passed(events, sides),
    )


def race_plots(samples_ms: Mapping[str, Sequence[float]]) -> dict[str, bytes]:
    """The percentile curves of both sinks in one figure."""
    from event_processor.report.plots import percentile_curve

    series: dict[str, Any] = {LABELS[k]: v for k, v in samples_ms.items()}
    return {"race_percentiles": percentile_curve(series, title="Commit to document visible")}
