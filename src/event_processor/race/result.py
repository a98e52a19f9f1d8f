"""The race's figures: one workload through our consumer and each peer sink.

Every sink reads the same change topic from a consumer group of its own and writes one
document per row into the same MongoDB-wire store, each into a database of its own. One
watcher stamps the moment each row's document first becomes visible in each database;
latency is that moment minus the row's commit time as Debezium reports it
(``source.ts_us``), the T0 of every figure in this project.

A race is made of legs (``race.run``): each sink alone at the offered rate (latency),
each sink alone draining the same pre-produced backlog (throughput, CPU per row), in
turn and repeated (A B C A B C …) so that drift on a noisy machine spreads over all of
them, and one leg with every sink at once. This module holds the pure parts: figures,
spreads over repeats, ratios ours/theirs and the tables.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table

from event_processor.metrics.stats import LatencySummary
from event_processor.race.sinks import OURS, SINKS
from event_processor.report.schema import (
    RaceIntegrity,
    RaceLeg,
    RaceResult,
    RaceSide,
    RaceSinkSummary,
    RaceSpread,
)

LATENCY_KEYS = ("p50", "p95", "p99")
RATIO_KEYS = ("throughput", *LATENCY_KEYS, "cpu")
# ours / theirs that meets the target: at least as fast (throughput >= 1, latency <= 1)
# and at most as dear (cpu <= 1).
HIGHER_IS_BETTER = {"throughput"}


class RaceBrokenError(ValueError):
    """A figure that cannot be right (a document visible before its commit)."""


def side_result(
    label: str,
    database: str,
    ids: Sequence[int],
    t0_us: Mapping[int, int],
    visible_us: Mapping[int, int],
) -> RaceSide:
    """Latency and throughput of one sink over the leg's ``ids``.

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


def drain_rate(visible_us: Mapping[int, int], start_us: int) -> float | None:
    """Rows per second a backlog drained at: every row over the time from ``start_us``
    (the sink seen assigned its topic, after its start-up) or its first document, if
    that came earlier, to its last document."""
    if not visible_us:
        return None
    stamps = visible_us.values()
    span_us = max(stamps) - min(start_us, min(stamps))
    return round(len(visible_us) * 1e6 / span_us, 1) if span_us > 0 else None


def integrity(rows: Mapping[int, str], docs: Iterable[tuple[int, str | None]]) -> RaceIntegrity:
    """A sink's documents (row id, payload) against PostgreSQL's rows (id -> payload)."""
    seen: set[int] = set()
    documents = extra = mismatched = 0
    for row_id, payload in docs:
        documents += 1
        if row_id not in rows or row_id in seen:
            extra += 1
            continue
        seen.add(row_id)
        if payload != rows[row_id]:
            mismatched += 1
    return RaceIntegrity(
        expected=len(rows),
        documents=documents,
        missing=len(rows) - len(seen),
        extra=extra,
        mismatched=mismatched,
    )


def integrity_text(check: RaceIntegrity) -> str:
    if check.exact:
        return f"exact ({check.documents} documents)"
    parts = [f"{n} {what}" for n, what in ((check.missing, "missing"), (check.extra, "extra"),
             (check.mismatched, "mismatched")) if n]  # fmt: skip
    return f"{check.documents}/{check.expected} documents: " + ", ".join(parts)


def spread(values: Iterable[float | None]) -> RaceSpread | None:
    got = [v for v in values if v is not None]
    if not got:
        return None
    return RaceSpread(
        median=round(statistics.median(got), 3), min=round(min(got), 3), max=round(max(got), 3),
        n=len(got),
    )  # fmt: skip


def _legs(legs: Sequence[RaceLeg], mode: str, sink: str) -> list[RaceSide]:
    return [leg.sides[sink] for leg in legs if leg.mode == mode and sink in leg.sides]


def summarize(
    legs: Sequence[RaceLeg], configs: Mapping[str, dict[str, str]], processes: Mapping[str, str]
) -> dict[str, RaceSinkSummary]:
    """Each sink over its legs: the spread of its figures, completeness, integrity."""
    out: dict[str, RaceSinkSummary] = {}
    names = [n for n in SINKS if any(n in leg.sides for leg in legs)]
    for name in names:
        sink = SINKS[name]
        rate = _legs(legs, "rate", name)
        drain = _legs(legs, "drain", name)
        every = [(leg, leg.sides[name]) for leg in legs if name in leg.sides]
        problems = [
            f"{leg.mode} #{leg.repeat}: {integrity_text(check)}"
            for leg in legs
            if name in leg.sides
            and (check := leg.sides[name].integrity) is not None
            and not check.exact
        ]
        out[name] = RaceSinkSummary(
            label=sink.label,
            database=sink.database,
            process=processes.get(name, ""),
            why=sink.why,
            config=configs.get(name, {}),
            drain_rows_per_s=spread(s.drain_rows_per_s for s in drain),
            p50_ms=spread(s.latency_ms.p50 for s in rate if s.latency_ms.count),
            p95_ms=spread(s.latency_ms.p95 for s in rate if s.latency_ms.count),
            p99_ms=spread(s.latency_ms.p99 for s in rate if s.latency_ms.count),
            cpu_s_per_1000_rows=spread(s.cpu_s_per_1000_rows for s in drain),
            complete=all(s.visible == leg.events for leg, s in every),
            integrity_problems=problems,
        )
    return out


def _figure(side: RaceSide, key: str) -> float | None:
    if key == "throughput":
        return side.drain_rows_per_s
    if key == "cpu":
        return side.cpu_s_per_1000_rows
    return float(getattr(side.latency_ms, key)) if side.latency_ms.count else None


def paired_ratios(legs: Sequence[RaceLeg], peer: str) -> dict[str, RaceSpread | None]:
    """ours / peer per figure, paired repeat by repeat (the legs of one repeat ran side
    by side in time), with the spread over the repeats."""
    out: dict[str, RaceSpread | None] = {}
    for key in RATIO_KEYS:
        mode = "rate" if key in LATENCY_KEYS else "drain"
        by_repeat: dict[int, dict[str, float | None]] = {}
        for leg in legs:
            if leg.mode != mode:
                continue
            for name in (OURS, peer):
                if name in leg.sides:
                    by_repeat.setdefault(leg.repeat, {})[name] = _figure(leg.sides[name], key)
        values = []
        for pair in by_repeat.values():
            ours, theirs = pair.get(OURS), pair.get(peer)
            if ours is not None and theirs:
                values.append(ours / theirs)
        out[key] = spread(values)
    return out


def target_met(key: str, ratio: RaceSpread | None) -> bool | None:
    """Whether the median ratio ours/theirs meets the target (None: no figure)."""
    if ratio is None:
        return None
    return ratio.median >= 1.0 if key in HIGHER_IS_BETTER else ratio.median <= 1.0


def assemble(
    *,
    events: int,
    rate: float,
    repeats: int,
    timeout_s: float,
    table: str,
    backlog_rows: int | None = None,
    backlog_table: str,
    topic: str,
    probe: str,
    poll_interval_ms: float,
    legs: Sequence[RaceLeg],
    configs: Mapping[str, dict[str, str]],
    processes: Mapping[str, str],
    schedule_lag_us: Sequence[int] = (),
    notes: Sequence[str] = (),
) -> RaceResult:
    """The race's result entry from its legs."""
    sinks = summarize(legs, configs, processes)
    peers = [n for n in sinks if n != OURS]
    ratios = {p: paired_ratios(legs, p) for p in peers}
    targets = {p: {k: target_met(k, r) for k, r in ratios[p].items()} for p in peers}
    ours = sinks.get(OURS)
    return RaceResult(
        events=events,
        rate=rate,
        repeats=repeats,
        backlog_rows=backlog_rows or events,
        timeout_s=timeout_s,
        table=table,
        backlog_table=backlog_table,
        topic=topic,
        probe=probe,
        poll_interval_ms=poll_interval_ms,
        sinks=sinks,
        legs=list(legs),
        ratios=ratios,
        targets=targets,
        schedule_lag_ms=LatencySummary.from_us(schedule_lag_us),
        notes=list(notes),
        passed=ours is not None and ours.complete and not ours.integrity_problems,
    )


def latency_samples_ms(
    ids: Sequence[int], t0_us: Mapping[int, int], visible_us: Mapping[int, int]
) -> list[float]:
    """The per-row latencies in ms (for the percentile plot)."""
    return [(visible_us[i] - t0_us[i]) / 1000 for i in ids if i in visible_us and i in t0_us]


def _fig(value: RaceSpread | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if value.n == 1 or value.min == value.max:
        return f"{value.median:.{digits}f}"
    return f"{value.median:.{digits}f} ({value.min:.{digits}f}-{value.max:.{digits}f})"


def _x(value: float) -> str:
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def _ratio(value: RaceSpread | None) -> str:
    if value is None:
        return "-"
    if value.n == 1:
        return _x(value.median)
    return f"{_x(value.median)} ({_x(value.min)}-{_x(value.max)})"


def summary_rows(race: RaceResult) -> list[list[str]]:
    """One row per sink (median and spread over the repeats), then the ratio rows."""
    rows = []
    for s in race.sinks.values():
        rows.append([
            s.label,
            _fig(s.drain_rows_per_s),
            _fig(s.p50_ms), _fig(s.p95_ms), _fig(s.p99_ms),
            _fig(s.cpu_s_per_1000_rows, 3),
            ("complete" if s.complete else "NOT all visible") + ", "
            + ("exact" if not s.integrity_problems else "; ".join(s.integrity_problems)),
        ])  # fmt: skip
    for peer, r in race.ratios.items():
        rows.append([
            f"ours / {race.sinks[peer].label}",
            _ratio(r.get("throughput")),
            _ratio(r.get("p50")), _ratio(r.get("p95")), _ratio(r.get("p99")),
            _ratio(r.get("cpu")),
            ", ".join(f"{k} {'met' if v else 'NOT met'}"
                      for k, v in race.targets.get(peer, {}).items() if v is not None),
        ])  # fmt: skip
    return rows


SUMMARY_HEAD = ("sink", "drain rows/s", "p50 ms", "p95 ms", "p99 ms", "CPU s/1000 rows",
                "visibility, integrity")  # fmt: skip


def race_table(race: RaceResult) -> Table:
    """Every sink side by side (median, min-max over repeats), and the ratios ours/theirs."""
    verdict = "[green]ours complete and exact[/]" if race.passed else "[red]ours NOT exact[/]"
    table = Table(
        title=f"race: {race.repeats} repeat(s) of each sink alone ({race.events} rows at "
        f"{race.rate:g}/s; a backlog of {race.backlog_rows} rows), commit -> document visible "
        f"({race.probe}, poll {race.poll_interval_ms:g} ms): {verdict}"
    )
    for col in SUMMARY_HEAD:
        table.add_column(col, justify="left" if col in ("sink", SUMMARY_HEAD[-1]) else "right")
    for row in summary_rows(race):
        table.add_row(*row)
    return table


def race_plots(samples_ms: Mapping[str, Sequence[float]]) -> dict[str, bytes]:
    """The percentile curves of every sink (alone at the rate, all repeats) in one figure."""
    from event_processor.report.plots import percentile_curve

    series: dict[str, Any] = {SINKS[k].label: v for k, v in samples_ms.items() if v}
    return {"race_percentiles": percentile_curve(series, title="Commit to document visible")}


def external_result(scenario: Any, outcome: Any) -> RaceResult:
    """A black-box run (race.external) as a race document of one sink."""
    from event_processor.race.external import EXTERNAL, outcome_lines

    side = outcome.side
    leg = RaceLeg(mode="rate", repeat=1, events=scenario.events, sides={EXTERNAL: side})
    problems = [] if side.integrity is None or side.integrity.exact else [
        f"rate #1: {integrity_text(side.integrity)}"]  # fmt: skip
    summary = RaceSinkSummary(
        label=side.label, database=side.database, process="not measured (not ours to watch)",
        why="your pipeline, measured from the outside: our consumer was not started",
        config=outcome.mapping.describe(),
        p50_ms=spread([side.latency_ms.p50]), p95_ms=spread([side.latency_ms.p95]),
        p99_ms=spread([side.latency_ms.p99]), complete=side.visible == scenario.events,
        integrity_problems=problems,
    )  # fmt: skip
    return RaceResult(
        events=scenario.events, rate=scenario.rate, repeats=1,
        timeout_s=scenario.delivery_timeout_s, table=outcome.mapping.table,
        topic=outcome.mapping.topic, probe="black box: " + outcome.t0_source,
        poll_interval_ms=2.0, sinks={EXTERNAL: summary}, legs=[leg],
        notes=outcome_lines(outcome), passed=outcome.passed,
    )  # fmt: skip
