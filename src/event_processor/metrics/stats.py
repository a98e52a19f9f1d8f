"""Percentile statistics of a run: exact figures for reports, HdrHistogram for live views.

Values come in as integer microseconds and go out as millisecond floats.

Percentile definition: **nearest rank** — the p-th percentile is the smallest sample such
that at least p % of the samples are at or below it (rank ``ceil(p/100 * n)``, counted
from 1). It is always an observed value, never an interpolation, and it is the definition
HdrHistogram's ``get_value_at_percentile`` uses, so live and final figures agree. The rank
is computed with exact rational arithmetic: ``99.9 / 100 * 1000`` must be rank 999, not
a float that rounds up to 1000.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

from event_processor.metrics.timing import SendRecord, TimingRecord

# Report order of the percentile fields: name -> percent.
PERCENTILES: dict[str, float] = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}

# The four stages between commit and MongoDB ack; end_to_end is kept separately.
STAGE_NAMES = ("capture", "kafka", "consumer_lag", "processing")

# StreamingLatency range: 1 µs .. 60 s at 3 significant digits (0.1 % value error).
HDR_LOWEST_US = 1
HDR_HIGHEST_US = 60_000_000
HDR_SIGNIFICANT_DIGITS = 3

SampleArray = npt.NDArray[np.int64]


def nearest_rank(sorted_us: Sequence[int] | SampleArray, percent: float) -> int:
    """Nearest-rank percentile of an ascending, non-empty sample set."""
    n = len(sorted_us)
    if n == 0:
        raise ValueError("no samples")
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"percentile {percent} is outside 0..100")
    # Fraction(str(...)) reads 99.9 as 999/10 exactly, keeping the rank integral.
    rank = math.ceil(Fraction(str(percent)) * n / 100)
    return int(sorted_us[max(rank, 1) - 1])


def _ms(us: float) -> float:
    # Rounded to the µs the stamps carry, so float noise never reaches a report.
    return round(us / 1000.0, 3)


@dataclass(slots=True, frozen=True)
class LatencySummary:
    """Count, extremes, mean and percentiles of one latency, in milliseconds.

    An empty summary has ``count == 0`` and zeros elsewhere: gates must check ``count``.
    """

    count: int = 0
    min: float = 0.0
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    p999: float = 0.0
    max: float = 0.0

    @classmethod
    def from_us(cls, samples_us: Iterable[int] | SampleArray) -> LatencySummary:
        """Exact summary of integer µs samples (any order; negatives allowed)."""
        if isinstance(samples_us, np.ndarray):
            values = np.sort(samples_us.astype(np.int64, copy=False))
        else:
            values = np.sort(np.fromiter(samples_us, dtype=np.int64))
        if values.size == 0:
            return cls()
        pct = {name: _ms(nearest_rank(values, p)) for name, p in PERCENTILES.items()}
        return cls(
            count=int(values.size),
            min=_ms(int(values[0])),
            mean=_ms(float(values.mean())),
            max=_ms(int(values[-1])),
            **pct,
        )

    def to_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "min": self.min,
            "mean": self.mean,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "p999": self.p999,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencySummary:
        return cls(
            count=int(data.get("count", 0)),
            **{k: float(data[k]) for k in ("min", "mean", "p50", "p95", "p99", "p999", "max")},
        )


class StreamingLatency:
    """Live latency aggregation in an HdrHistogram (1 µs .. 60 s, 3 significant digits).

    For the dashboard and Prometheus, where keeping every sample is not an option.
    Values above 60 s are recorded as 60 s and counted in ``clamped``, so an outlier
    shows up as the maximum instead of vanishing (HdrHistogram drops them silently).
    """

    def __init__(self) -> None:
        self._hist = HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS)
        self.clamped = 0

    def record(self, us: int) -> None:
        if us < 0:
            raise ValueError(f"negative latency {us} µs: the run's timestamps are broken")
        if us > HDR_HIGHEST_US:
            self.clamped += 1
            us = HDR_HIGHEST_US
        self._hist.record_value(us)

    @property
    def count(self) -> int:
        return int(self._hist.get_total_count())

    def reset(self) -> None:
        self._hist.reset()
        self.clamped = 0

    def merge(self, other: StreamingLatency) -> None:
        self._hist.add(other._hist)
        self.clamped += other.clamped

    def summary(self) -> LatencySummary:
        """Summary within the histogram's precision (values within 0.1 %)."""
        if self.count == 0:
            return LatencySummary()
        h = self._hist
        pct = {name: _ms(h.get_value_at_percentile(p)) for name, p in PERCENTILES.items()}
        return LatencySummary(
            count=self.count,
            min=_ms(h.get_min_value()),
            mean=_ms(h.get_mean_value()),
            max=_ms(h.get_max_value()),
            **pct,
        )


@dataclass(slots=True, frozen=True)
class RunStats:
    """Everything the report and the SLO gates need from one measured run."""

    events: int  # business events (generator sends) measured, after warm-up
    committed: int | None  # row changes committed in PostgreSQL (None: unknown)
    applied: int  # distinct row changes acknowledged by MongoDB
    duplicates: int  # redelivered records (at-least-once), left out of the figures
    throughput_eps: float  # change events applied / (last T5 - first T0)
    success_rate: float | None  # applied / committed (a fraction; None: unknown)
    duration_s: float
    end_to_end: LatencySummary
    stages: dict[str, LatencySummary]
    by_table_op: dict[str, LatencySummary]  # key "table:op"
    by_kind: dict[str, LatencySummary]  # generator event kind, per transaction
    unmatched_sends: int  # sends whose transaction produced no timing record
    schedule_lag: LatencySummary  # actual send - intended send (coordinated omission)
    commit_time: LatencySummary  # client-observed COMMIT duration
    # Raw end-to-end and stage samples (µs) for plots; not part of the JSON figures.
    samples_us: dict[str, SampleArray] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able figures, keyed as in the report's scenario entries."""
        return {
            "events": self.events,
            "committed": self.committed,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "throughput_eps": round(self.throughput_eps, 3),
            "success_rate": self.success_rate,
            "duration_s": round(self.duration_s, 6),
            "e2e_ms": self.end_to_end.to_dict(),
            "stages_ms": {name: s.to_dict() for name, s in self.stages.items()},
            "by_table_op": {name: s.to_dict() for name, s in self.by_table_op.items()},
            "by_kind": {name: s.to_dict() for name, s in self.by_kind.items()},
            "unmatched_sends": self.unmatched_sends,
            "schedule_lag_ms": self.schedule_lag.to_dict(),
            "commit_ms": self.commit_time.to_dict(),
        }


def dedupe(timings: Iterable[TimingRecord]) -> tuple[list[TimingRecord], int]:
    """One record per correlation id (the first ack wins); returns (records, duplicates).

    At-least-once delivery may apply an event twice; the read model reflected it at the
    first acknowledgement, so that is its latency.
    """
    first: dict[str, TimingRecord] = {}
    duplicates = 0
    for rec in timings:
        cid = rec.correlation_id
        seen = first.get(cid)
        if seen is None:
            first[cid] = rec
            continue
        duplicates += 1
        if rec.t5_us < seen.t5_us:
            first[cid] = rec
    return list(first.values()), duplicates


def drop_warmup(
    timings: Sequence[TimingRecord], sends: Sequence[SendRecord], warmup_events: int
) -> tuple[list[TimingRecord], list[SendRecord], int]:
    """Drop the first ``warmup_events`` sends (by seq) and their transactions' records.

    Returns (timings, sends, dropped_rows); the caller's committed-row count must shrink
    by dropped_rows. Records of transactions the generator did not send are kept.
    """
    if warmup_events <= 0:
        return list(timings), list(sends), 0
    ordered = sorted(sends, key=lambda s: s.seq)
    dropped, kept = ordered[:warmup_events], ordered[warmup_events:]
    dropped_tx = {s.tx_id for s in dropped}
    kept_timings = [t for t in timings if t.tx_id not in dropped_tx]
    return kept_timings, kept, sum(s.rows for s in dropped)


def _stage_samples(timings: Sequence[TimingRecord]) -> dict[str, SampleArray]:
    # stage_deltas_us raises NegativeStageError on a broken run: deliberately not caught.
    deltas = [t.stage_deltas_us() for t in timings]
    return {
        name: np.fromiter((d[name] for d in deltas), dtype=np.int64, count=len(deltas))
        for name in (*STAGE_NAMES, "end_to_end")
    }


def _throughput(timings: Sequence[TimingRecord]) -> tuple[float, float]:
    """(events/s, seconds) from the first T0 commit to the last T5 ack."""
    if not timings:
        return 0.0, 0.0
    span_us = max(t.t5_us for t in timings) - min(t.t0_us for t in timings)
    if span_us <= 0:
        return 0.0, 0.0
    seconds = span_us / 1e6
    return len(timings) / seconds, seconds


def _group(
    timings: Iterable[TimingRecord], samples: SampleArray, key: str
) -> dict[str, LatencySummary]:
    groups: dict[str, list[int]] = defaultdict(list)
    for rec, value in zip(timings, samples.tolist(), strict=True):
        groups[key.format(table=rec.table, op=rec.op)].append(value)
    return {name: LatencySummary.from_us(values) for name, values in sorted(groups.items())}


def _by_kind(
    timings: Iterable[TimingRecord], sends: Iterable[SendRecord]
) -> tuple[dict[str, LatencySummary], int]:
    """Per business-event kind: a send's latency is max T5 minus min T0 of its tx."""
    span: dict[int, tuple[int, int]] = {}
    for rec in timings:
        lo, hi = span.get(rec.tx_id, (rec.t0_us, rec.t5_us))
        span[rec.tx_id] = (min(lo, rec.t0_us), max(hi, rec.t5_us))
    groups: dict[str, list[int]] = defaultdict(list)
    unmatched = 0
    for send in sends:
        tx = span.get(send.tx_id)
        if tx is None:
            unmatched += 1  # lost or not yet applied: integrity's business, not latency's
            continue
        groups[send.kind].append(tx[1] - tx[0])
    by_kind = {kind: LatencySummary.from_us(v) for kind, v in sorted(groups.items())}
    return by_kind, unmatched


def summarize_run(
    timings: list[TimingRecord],
    sends: list[SendRecord],
    committed_rows: int | None,
    *,
    warmup_events: int = 0,
) -> RunStats:
    """Exact figures of one run.

    ``committed_rows`` is the number of row changes PostgreSQL committed during the run;
    when None it is taken from the generator's sends (sum of ``rows``) if there are any.
    ``warmup_events`` first sends (and their transactions' records and rows) are left out.
    Raises NegativeStageError when any record has a negative stage delta.
    """
    timings, sends, dropped_rows = drop_warmup(timings, sends, warmup_events)
    if committed_rows is None and sends:
        committed = sum(s.rows for s in sends)
    elif committed_rows is not None:
        committed = max(committed_rows - dropped_rows, 0)
    else:
        committed = None
    records, duplicates = dedupe(timings)
    samples = _stage_samples(records)
    throughput, seconds = _throughput(records)
    by_kind, unmatched = _by_kind(records, sends)
    applied = len(records)
    return RunStats(
        events=len(sends) if sends else applied,
        committed=committed,
        applied=applied,
        duplicates=duplicates,
        throughput_eps=throughput,
        success_rate=(applied / committed) if committed else None,
        duration_s=seconds,
        end_to_end=LatencySummary.from_us(samples["end_to_end"]),
        stages={name: LatencySummary.from_us(samples[name]) for name in STAGE_NAMES},
        by_table_op=_group(records, samples["end_to_end"], "{table}:{op}"),
        by_kind=by_kind,
        unmatched_sends=unmatched,
        schedule_lag=LatencySummary.from_us(s.schedule_lag_us for s in sends),
        commit_time=LatencySummary.from_us(s.commit_us for s in sends),
        samples_us=samples,
    )
