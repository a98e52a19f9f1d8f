"""Exact statistics of a run for reports and gates.

Values come in as integer microseconds and go out as millisecond floats. Percentiles
follow the project's one rule (nearest rank, ``metrics.percentiles``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from event_processor.metrics.percentiles import PERCENTILES, nearest_rank
from event_processor.metrics.timing import SendRecord, TimingRecord

# The four stages between commit and MongoDB ack; end_to_end is kept separately.
STAGE_NAMES = ("capture", "kafka", "consumer_lag", "processing")

SampleArray = npt.NDArray[np.int64]


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


@dataclass(slots=True, frozen=True)
class RunStats:
    """Everything the report and the SLO gates need from one measured run."""

    events: int  # business events (generator sends) measured, after warm-up
    committed: int | None  # row changes committed in PostgreSQL (None: unknown)
    applied: int  # distinct row changes acknowledged by MongoDB
    duplicates: int  # redelivered records (at-least-once), left out of the figures
    throughput_eps: float  # row changes applied / (last T5 - first T0): throughput_per_s
    business_events_per_s: float  # business events (transactions) over the same span
    success_rate: float | None  # applied / committed (a fraction; None: unknown)
    duration_s: float
    end_to_end: LatencySummary
    stages: dict[str, LatencySummary]
    by_table_op: dict[str, LatencySummary]  # key "table:op"
    by_kind: dict[str, LatencySummary]  # generator event kind, per transaction
    unmatched_sends: int  # sends whose transaction produced no timing record
    schedule_lag: LatencySummary  # actual send - intended send (coordinated omission)
    commit_time: LatencySummary  # client-observed COMMIT duration
    # T5 - the intended send time of the row change's transaction: latency as a user of
    # the schedule sees it, a late send included (coordinated-omission-free, as wrk2 and
    # the OpenMessaging Benchmark report it). Records of unsent transactions are left out.
    from_intended: LatencySummary = field(default_factory=LatencySummary)
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
            "business_events_per_s": round(self.business_events_per_s, 3),
            "success_rate": self.success_rate,
            "duration_s": round(self.duration_s, 6),
            "e2e_ms": self.end_to_end.to_dict(),
            "stages_ms": {name: s.to_dict() for name, s in self.stages.items()},
            "by_table_op": {name: s.to_dict() for name, s in self.by_table_op.items()},
            "by_kind": {name: s.to_dict() for name, s in self.by_kind.items()},
            "unmatched_sends": self.unmatched_sends,
            "schedule_lag_ms": self.schedule_lag.to_dict(),
            "commit_ms": self.commit_time.to_dict(),
            "e2e_from_intended_ms": self.from_intended.to_dict(),
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


def throughput_per_s(count: int, first_t0_us: int, last_t5_us: int) -> float:
    """The project's one throughput definition: ``count`` things applied over the span
    from the first commit (T0) to the last MongoDB acknowledgement (T5), per second.

    Counting row changes gives row changes/s (the ``throughput`` SLO); counting the
    business events (generator transactions) of the same span gives business events/s.
    """
    span_us = last_t5_us - first_t0_us
    if count <= 0 or span_us <= 0:
        return 0.0
    return count * 1e6 / span_us


def _throughput(timings: Sequence[TimingRecord]) -> tuple[float, float]:
    """(row changes/s, seconds) from the first T0 commit to the last T5 ack."""
    if not timings:
        return 0.0, 0.0
    first_t0 = min(t.t0_us for t in timings)
    last_t5 = max(t.t5_us for t in timings)
    return throughput_per_s(len(timings), first_t0, last_t5), max(last_t5 - first_t0, 0) / 1e6


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


def _from_intended(timings: Iterable[TimingRecord], sends: Iterable[SendRecord]) -> SampleArray:
    intended = {s.tx_id: s.intended_us for s in sends}
    values = [t.t5_us - intended[t.tx_id] for t in timings if t.tx_id in intended]
    return np.asarray(values, dtype=np.int64)


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
    events = len(sends) if sends else applied
    return RunStats(
        events=events,
        committed=committed,
        applied=applied,
        duplicates=duplicates,
        throughput_eps=throughput,
        business_events_per_s=events / seconds if seconds > 0 and applied else 0.0,
        success_rate=(applied / committed) if committed else None,
        duration_s=seconds,
        end_to_end=LatencySummary.from_us(samples["end_to_end"]),
        stages={name: LatencySummary.from_us(samples[name]) for name in STAGE_NAMES},
        by_table_op=_group(records, samples["end_to_end"], "{table}:{op}"),
        by_kind=by_kind,
        unmatched_sends=unmatched,
        schedule_lag=LatencySummary.from_us(s.schedule_lag_us for s in sends),
        commit_time=LatencySummary.from_us(s.commit_us for s in sends),
        from_intended=LatencySummary.from_us(_from_intended(records, sends)),
        samples_us=samples,
    )
