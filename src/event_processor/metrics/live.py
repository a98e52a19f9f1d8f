"""Live, thread-safe aggregation of a running pipeline's timings for the dashboard.

The consumer feeds ``TimingRecord``s, the generator feeds ``SendRecord``s, and
``snapshot()`` freezes the current state into plain, immutable data that the Rich views
render. Per-stage percentiles come from HdrHistograms (1 µs..60 s, 3 significant
digits) read with the project's one rank rule (``metrics.percentiles``); the per-second
p99 series uses each second's exact sorted samples.

Records whose stages run backwards (a broken run, see ``TimingRecord.stage_deltas_us``)
are counted as ``broken`` and kept out of every histogram: the dashboard must not crash
the consumer thread that feeds it, and it must not show such a record as a number.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from event_processor.errors import ConfigError
from event_processor.metrics.percentiles import (
    HISTOGRAM_HIGHEST_US,
    PERCENTILES,
    histogram_percentiles_us,
    nearest_rank,
    new_histogram,
)
from event_processor.metrics.stats import throughput_per_s
from event_processor.metrics.timing import (
    STAGES,
    NegativeStageError,
    SendRecord,
    TimingRecord,
)

GENERATOR_STAGES = ("schedule_lag", "commit")
ALL_STAGES = (*STAGES, *GENERATOR_STAGES)
SLO_STATS = (*PERCENTILES, "max")
# Scenario SLOs that are not latencies: throughput (events/s) is shown, the integrity
# ones are judged after the run, so the live view accepts and ignores them.
THROUGHPUT_SLO = "throughput"
IGNORED_SLOS = ("success", "integrity")
STAGE_ALIASES = {"e2e": "end_to_end"}

DEFAULT_WINDOW_S = 60
DEFAULT_RECENT = 20
# Bounds that keep memory flat on long runs (each group owns a ~140 KB histogram).
MAX_GROUPS = 64
OTHER_GROUP = "(other)"
MAX_KNOWN_TX = 200_000
MAX_PENDING_TX = 20_000


# ---------------------------------------------------------------------------
# Snapshot: plain immutable data, the dashboard's only input
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Distribution of one stage (or group) in milliseconds."""

    name: str
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float

    def value(self, stat: str) -> float:
        """The value of ``p50``/``p95``/``p99``/``p999``/``max``/``mean`` in ms."""
        return float(getattr(self, f"{stat}_ms"))


EMPTY_STATS = LatencyStats("", 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    """One event kind (or table/op) with its volume and end-to-end latency."""

    label: str
    sent: int  # generator events of this kind (0 for table/op rows)
    applied: int  # row changes applied to the read model
    e2e: LatencyStats


@dataclass(frozen=True, slots=True)
class RecentEvent:
    """One recently applied row change."""

    applied_us: int  # T5, wall clock
    table: str
    op: str
    key: str
    kind: str  # "" while the generator's SendRecord is unknown
    e2e_ms: float
    processing_ms: float


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything the dashboard shows, frozen at ``taken_us``."""

    taken_us: int
    scenario: str
    target_events: int
    sent_events: int
    sent_rows: int
    applied: int
    elapsed_s: float
    current_eps: float  # applied during the last complete wall second
    average_eps: float  # row changes/s so far, as the report counts it (throughput_per_s)
    throughput_series: tuple[int, ...]  # applied per second, oldest first
    p99_series_ms: tuple[float | None, ...]  # e2e p99 per second; None: no events
    stages: tuple[LatencyStats, ...]  # STAGES order
    generator: tuple[LatencyStats, ...]  # GENERATOR_STAGES order
    by_kind: tuple[BreakdownRow, ...]
    by_table_op: tuple[BreakdownRow, ...]
    recent: tuple[RecentEvent, ...]  # newest first
    errors: int
    dead_lettered: int
    consumer_lag: int | None  # None: never reported
    broken: int  # records with a negative stage, excluded from the histograms
    unmatched: int  # applied rows whose transaction has no SendRecord (yet)
    slo_targets: tuple[tuple[str, float], ...]  # canonical "stage.stat" -> ms
    throughput_target_eps: float | None = None  # the "throughput" SLO (higher is better)

    def stage(self, name: str) -> LatencyStats:
        for stats in (*self.stages, *self.generator):
            if stats.name == name:
                return stats
        raise KeyError(name)

    def slo_target(self, stage: str, stat: str) -> float | None:
        wanted = f"{stage}.{stat}"
        for name, target in self.slo_targets:
            if name == wanted:
                return target
        return None

    @property
    def expected_applied(self) -> int:
        """Row changes the scenario will apply (estimated until every event is sent)."""
        if self.target_events <= 0:
            return 0
        if self.sent_events <= 0 or self.sent_rows <= 0:
            return self.target_events  # no generator feed: one row per event
        if self.sent_events >= self.target_events:
            return self.sent_rows
        return round(self.target_events * self.sent_rows / self.sent_events)

    @property
    def progress(self) -> float | None:
        expected = self.expected_applied
        if expected <= 0:
            return None
        return min(1.0, self.applied / expected)


# ---------------------------------------------------------------------------
# SLO names
# ---------------------------------------------------------------------------


def parse_slo_name(name: str) -> tuple[str, str]:
    """``p99`` (end to end), ``capture.p95`` or ``consumer_lag_p99`` -> (stage, stat).

    A misspelled name is a ConfigError, never a silently ignored target.
    """
    text = name.strip().lower()
    if text in SLO_STATS:
        return "end_to_end", text
    for sep in (".", "_"):
        stage, found, stat = text.rpartition(sep)
        stage = STAGE_ALIASES.get(stage, stage)
        if found and stage in ALL_STAGES and stat in SLO_STATS:
            return stage, stat
    raise ConfigError(
        "slo",
        f"unknown SLO name {name!r}",
        f"use <stat> or <stage>.<stat>, stat in {', '.join(SLO_STATS)}, "
        f"stage in {', '.join(ALL_STAGES)}",
    )


@dataclass(frozen=True, slots=True)
class SloTargets:
    latency: tuple[tuple[str, float], ...]  # canonical "stage.stat" -> ms
    throughput_eps: float | None


def canonical_slos(targets: Mapping[str, float]) -> SloTargets:
    """Validate scenario SLOs (ms, or events/s for ``throughput``) for the live view."""
    latency: dict[str, float] = {}
    throughput: float | None = None
    for name, target in targets.items():
        key = name.strip().lower()
        if key in IGNORED_SLOS:
            continue
        if not target > 0:
            raise ConfigError("slo", f"target of {name!r} must be > 0, got {target}")
        if key == THROUGHPUT_SLO:
            throughput = float(target)
            continue
        stage, stat = parse_slo_name(name)
        latency[f"{stage}.{stat}"] = float(target)
    return SloTargets(tuple(latency.items()), throughput)


class _Hist:
    """An HdrHistogram plus exact sum/max, with its stats cached until it changes."""

    __slots__ = ("_cache", "_cached_at", "hist", "max_us", "sum_us")

    def __init__(self) -> None:
        self.hist = new_histogram()
        self.sum_us = 0
        self.max_us = 0
        self._cached_at = -1
        self._cache = EMPTY_STATS

    def record(self, value_us: int) -> None:
        value = min(max(value_us, 0), HISTOGRAM_HIGHEST_US)  # keep the event; clamp its value
        self.hist.record_value(value)
        self.sum_us += value
        if value > self.max_us:
            self.max_us = value

    @property
    def count(self) -> int:
        return int(self.hist.total_count)

    def stats(self, name: str) -> LatencyStats:
        count = self.count
        if count != self._cached_at or self._cache.name != name:
            self._cache = self._compute(name, count)
            self._cached_at = count
        return self._cache

    def _compute(self, name: str, count: int) -> LatencyStats:
        if count == 0:
            return LatencyStats(name, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        p50, p95, p99, p999 = histogram_percentiles_us(self.hist, list(PERCENTILES.values()))
        return LatencyStats(
            name=name,
            count=count,
            p50_ms=p50 / 1000,
            p95_ms=p95 / 1000,
            p99_ms=p99 / 1000,
            p999_ms=p999 / 1000,
            max_ms=self.max_us / 1000,
            mean_ms=self.sum_us / count / 1000,
        )


class _Group:
    __slots__ = ("applied", "e2e", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.applied = 0
        self.e2e = _Hist()

    def row(self, label: str) -> BreakdownRow:
        return BreakdownRow(label, self.sent, self.applied, self.e2e.stats("end_to_end"))


class _Second:
    """Events applied during one wall second, with their exact e2e samples."""

    __slots__ = ("_p99_at", "_p99_ms", "e2e_us")

    def __init__(self) -> None:
        self.e2e_us = array("q")
        self._p99_at = 0
        self._p99_ms = 0.0

    @property
    def count(self) -> int:
        return len(self.e2e_us)

    def p99_ms(self) -> float | None:
        count = len(self.e2e_us)
        if count == 0:
            return None
        if count != self._p99_at:  # only seconds that changed are sorted again
            ordered = np.sort(np.array(self.e2e_us, dtype=np.int64))
            self._p99_ms = nearest_rank(ordered, 99.0) / 1000
            self._p99_at = count
        return self._p99_ms


# ---------------------------------------------------------------------------
# The aggregator
# ---------------------------------------------------------------------------


class LiveMetrics:
    """Thread-safe incremental aggregator; ``snapshot()`` is cheap enough for 4+ Hz."""

    _consumer_lag: int | None

    def __init__(
        self,
        *,
        scenario: str = "",
        target_events: int = 0,
        slo_targets: Mapping[str, float] | None = None,
        window_s: int = DEFAULT_WINDOW_S,
        recent_size: int = DEFAULT_RECENT,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s < 1 or recent_size < 1:
            raise ValueError("window_s and recent_size must be >= 1")
        self._lock = threading.Lock()
        self._window_s = window_s
        self._recent_size = recent_size
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._slos = canonical_slos(slo_targets or {})
        self._scenario = scenario
        self._target_events = target_events
        self._reset_locked()

    # -- configuration -----------------------------------------------------

    def set_scenario(self, name: str, target_events: int) -> None:
        """Name the run and its target; restarts the elapsed clock."""
        with self._lock:
            self._scenario = name
            self._target_events = target_events
            self._started = self._monotonic()

    def set_slo_targets(self, targets: Mapping[str, float]) -> None:
        """Replace the SLO targets (see ``canonical_slos``); a bad name is a ConfigError."""
        slos = canonical_slos(targets)
        with self._lock:
            self._slos = slos

    def reset(self) -> None:
        """Forget every record and counter; keeps the scenario and SLO targets."""
        with self._lock:
            self._reset_locked()

    # -- feeding -----------------------------------------------------------

    def record(self, timing: TimingRecord) -> None:
        self.record_many((timing,))

    def record_many(self, timings: Iterable[TimingRecord]) -> None:
        """Record a batch under one lock acquisition (what a consumer poll returns)."""
        prepared: list[tuple[TimingRecord, dict[str, int]]] = []
        broken = 0
        for timing in timings:
            try:
                prepared.append((timing, timing.stage_deltas_us()))
            except NegativeStageError:
                broken += 1
        with self._lock:
            self._broken += broken
            for timing, deltas in prepared:
                self._record_locked(timing, deltas)

    def record_send(self, send: SendRecord) -> None:
        self.record_sends((send,))

    def record_sends(self, sends: Iterable[SendRecord]) -> None:
        batch = list(sends)  # materialise a generator before taking the lock
        with self._lock:
            for send in batch:
                self._record_send_locked(send)

    def add_errors(self, count: int = 1) -> None:
        with self._lock:
            self._errors += count

    def add_dead_lettered(self, count: int = 1) -> None:
        with self._lock:
            self._dead_lettered += count

    def set_consumer_lag(self, lag: int) -> None:
        """Messages behind the log end, summed over the assigned partitions."""
        with self._lock:
            self._consumer_lag = lag

    # -- reading -----------------------------------------------------------

    def snapshot(self) -> MetricsSnapshot:
        now_s = self._wall_clock()
        with self._lock:
            return self._snapshot_locked(now_s)

    # -- internals (caller holds the lock) ----------------------------------

    def _reset_locked(self) -> None:
        self._started = self._monotonic()
        self._stage_hists = tuple(_Hist() for _ in STAGES)
        self._generator_hists = tuple(_Hist() for _ in GENERATOR_STAGES)
        self._kinds: dict[str, _Group] = {}
        self._table_ops: dict[str, _Group] = {}
        self._kind_by_tx: dict[int, str] = {}
        self._pending: dict[int, list[int]] = {}  # tx_id -> e2e µs awaiting its SendRecord
        self._pending_rows = 0
        self._evicted_rows = 0
        self._seconds: dict[int, _Second] = {}
        self._recent: deque[TimingRecord] = deque(maxlen=self._recent_size)
        self._sent_events = 0
        self._sent_rows = 0
        self._applied = 0
        self._first_t0 = 0
        self._last_t5 = 0
        self._errors = 0
        self._dead_lettered = 0
        self._consumer_lag = None
        self._broken = 0

    def _record_locked(self, timing: TimingRecord, deltas: dict[str, int]) -> None:
        self._applied += 1
        for stage, hist in zip(STAGES, self._stage_hists, strict=True):
            hist.record(deltas[stage])
        e2e = deltas["end_to_end"]
        _, table_op = self._group(self._table_ops, f"{timing.table}/{timing.op}")
        table_op.applied += 1
        table_op.e2e.record(e2e)
        self._attribute_kind(timing.tx_id, e2e)
        self._second(timing.t5_us // 1_000_000).e2e_us.append(e2e)
        self._recent.append(timing)
        if self._first_t0 == 0 or timing.t0_us < self._first_t0:
            self._first_t0 = timing.t0_us
        self._last_t5 = max(self._last_t5, timing.t5_us)

    def _attribute_kind(self, tx_id: int, e2e_us: int) -> None:
        kind = self._kind_by_tx.get(tx_id)
        if kind is not None:
            group = self._kinds[kind]
            group.applied += 1
            group.e2e.record(e2e_us)
            return
        # The timing overtook its SendRecord (separate processes): hold it briefly.
        waiting = self._pending.get(tx_id)
        if waiting is None:
            if len(self._pending) >= MAX_PENDING_TX:
                oldest = next(iter(self._pending))
                evicted = self._pending.pop(oldest)
                self._pending_rows -= len(evicted)
                self._evicted_rows += len(evicted)
            waiting = self._pending[tx_id] = []
        waiting.append(e2e_us)
        self._pending_rows += 1

    def _record_send_locked(self, send: SendRecord) -> None:
        self._sent_events += 1
        self._sent_rows += send.rows
        self._generator_hists[0].record(send.schedule_lag_us)
        self._generator_hists[1].record(send.commit_us)
        label, group = self._group(self._kinds, send.kind)
        group.sent += 1
        if len(self._kind_by_tx) >= MAX_KNOWN_TX:
            del self._kind_by_tx[next(iter(self._kind_by_tx))]  # oldest transaction
        self._kind_by_tx[send.tx_id] = label
        for e2e in self._pending.pop(send.tx_id, ()):
            group.applied += 1
            group.e2e.record(e2e)
            self._pending_rows -= 1

    @staticmethod
    def _group(groups: dict[str, _Group], label: str) -> tuple[str, _Group]:
        """The label's group; past MAX_GROUPS labels, new ones share OTHER_GROUP."""
        group = groups.get(label)
        if group is None:
            if len(groups) >= MAX_GROUPS:
                label = OTHER_GROUP
                group = groups.get(label)
            if group is None:
                group = groups[label] = _Group()
        return label, group

    def _second(self, second: int) -> _Second:
        bucket = self._seconds.get(second)
        if bucket is None:
            bucket = self._seconds[second] = _Second()
            # Prune here too, so memory stays flat when nobody takes snapshots.
            if len(self._seconds) > 2 * self._window_s + 8:
                self._prune_seconds(max(self._seconds) - self._window_s - 1)
        return bucket

    def _prune_seconds(self, oldest_kept: int) -> None:
        for second in [s for s in self._seconds if s < oldest_kept]:
            del self._seconds[second]

    def _series(self, now_s: float) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
        last = int(now_s) - 1  # the current second is still filling up
        first = last - self._window_s + 1
        self._prune_seconds(first)
        buckets = [self._seconds.get(s) for s in range(first, last + 1)]
        counts = tuple(b.count if b else 0 for b in buckets)
        p99s = tuple(b.p99_ms() if b else None for b in buckets)
        return counts, p99s

    def _average_eps(self) -> float:
        return throughput_per_s(self._applied, self._first_t0, self._last_t5)

    def _recent_events(self) -> tuple[RecentEvent, ...]:
        return tuple(
            RecentEvent(
                applied_us=t.t5_us,
                table=t.table,
                op=t.op,
                key=t.key,
                kind=self._kind_by_tx.get(t.tx_id, ""),
                e2e_ms=(t.t5_us - t.t0_us) / 1000,
                processing_ms=(t.t5_us - t.t3_us) / 1000,
            )
            for t in reversed(self._recent)
        )

    def _snapshot_locked(self, now_s: float) -> MetricsSnapshot:
        throughput, p99s = self._series(now_s)
        return MetricsSnapshot(
            taken_us=int(now_s * 1_000_000),
            scenario=self._scenario,
            target_events=self._target_events,
            sent_events=self._sent_events,
            sent_rows=self._sent_rows,
            applied=self._applied,
            elapsed_s=max(0.0, self._monotonic() - self._started),
            current_eps=float(throughput[-1]),
            average_eps=self._average_eps(),
            throughput_series=throughput,
            p99_series_ms=p99s,
            stages=tuple(h.stats(n) for n, h in zip(STAGES, self._stage_hists, strict=True)),
            generator=tuple(
                h.stats(n) for n, h in zip(GENERATOR_STAGES, self._generator_hists, strict=True)
            ),
            by_kind=_rows(self._kinds),
            by_table_op=_rows(self._table_ops),
            recent=self._recent_events(),
            errors=self._errors,
            dead_lettered=self._dead_lettered,
            consumer_lag=self._consumer_lag,
            broken=self._broken,
            unmatched=self._pending_rows + self._evicted_rows,
            slo_targets=self._slos.latency,
            throughput_target_eps=self._slos.throughput_eps,
        )


def _rows(groups: Mapping[str, _Group]) -> tuple[BreakdownRow, ...]:
    """Busiest first, so a cropped table keeps what matters."""
    ordered = sorted(groups.items(), key=lambda item: (-item[1].applied, -item[1].sent, item[0]))
    return tuple(group.row(label) for label, group in ordered)
