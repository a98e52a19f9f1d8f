"""Prometheus metrics of the consumer: applied, errors, dead letters, stage latencies, lag."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from event_processor.metrics.timing import STAGES, TimingRecord

log = logging.getLogger(__name__)

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)


class ConsumerTelemetry:
    def __init__(self, port: int) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "ep_events_applied", "Change events applied", ["table", "op"], registry=self.registry
        )
        self.errors = Counter("ep_errors", "Transient errors retried", registry=self.registry)
        self.dlq = Counter(
            "ep_dead_lettered", "Events sent to the dead-letter topic", registry=self.registry
        )
        self.dupes = Counter(
            "ep_duplicates_skipped", "Replayed or duplicated events skipped", registry=self.registry
        )
        self.stage = Histogram(
            "ep_stage_latency_seconds",
            "Per-stage latency",
            ["stage"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.lag = Gauge("ep_consumer_lag", "Messages behind the log end", registry=self.registry)
        self.instrumentation = Counter(
            "ep_instrumentation_seconds",
            "Time spent timing and publishing records",
            registry=self.registry,
        )
        self.batch_time = Counter(
            "ep_batch_processing_seconds", "Time spent processing batches", registry=self.registry
        )
        self.server: Any = None
        self._lag_checked = 0.0
        if port:
            self.server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def applied(self, records: list[TimingRecord]) -> None:
        counts: dict[tuple[str, str], int] = {}
        observers = self._stage_children()
        for r in records:
            counts[(r.table, r.op)] = counts.get((r.table, r.op), 0) + 1
            for stage, us in _deltas(r).items():
                observers[stage](us / 1e6)
        for (table, op), n in counts.items():
            self.events.labels(table, op).inc(n)

    def _stage_children(self) -> dict[str, Any]:
        # Label lookups cost more than the observation itself: resolve them once.
        if not hasattr(self, "_observers"):
            self._observers = {s: self.stage.labels(s).observe for s in STAGES}
        return self._observers

    def cost(self, instrumentation_s: float, batch_s: float) -> None:
        self.instrumentation.inc(instrumentation_s)
        self.batch_time.inc(batch_s)

    def retry(self, _msg: str) -> None:
        self.errors.inc()

    def dead_lettered(self) -> None:
        self.dlq.inc()

    def duplicate(self) -> None:
        self.dupes.inc()

    def idle(self, consumer: Any) -> None:
        # Lag is cheap to read from the consumer's own fetch positions, at most 1/s.
        now = time.monotonic()
        if now - self._lag_checked < 1:
            return
        self._lag_checked = now
        try:
            assigned = consumer.assignment()
            ends = consumer.end_offsets(list(assigned)) if assigned else {}
            self.lag.set(
                sum(max(0, end - (consumer.position(tp) or 0)) for tp, end in ends.items())
            )
        except Exception as exc:
            log.debug("lag check failed: %r", exc)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()


def _deltas(r: TimingRecord) -> dict[str, int]:
    try:
        return r.stage_deltas_us()
    except ValueError:
        return {s: 0 for s in STAGES}
