"""Prometheus metrics of the consumer: applied, errors, dead letters, stage latencies, lag."""

from __future__ import annotations

import bisect
import collections
import logging
import time
from operator import itemgetter
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Info, start_http_server
from prometheus_client.core import HistogramMetricFamily

from event_processor.errors import StackError
from event_processor.metrics.timing import STAGES

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
        self.rekeys = Counter(
            "ep_rekeys",
            "Collections re-keyed after their table's key changed",
            registry=self.registry,
        )
        self.dupes = Counter(
            "ep_duplicates_skipped", "Replayed or duplicated events skipped", registry=self.registry
        )
        self.stages = StageHistograms()
        self.registry.register(self.stages)
        self.lag = Gauge("ep_consumer_lag", "Messages behind the log end", registry=self.registry)
        self.instrumentation = Counter(
            "ep_instrumentation_seconds",
            "Time spent timing and publishing records",
            registry=self.registry,
        )
        self.batch_time = Counter(
            "ep_batch_processing_seconds", "Time spent processing batches", registry=self.registry
        )
        # What this process actually runs with (read from its Kafka and MongoDB clients),
        # so a report records the configuration used, not what the harness assumed.
        self.settings_info = Info(
            "ep_consumer_settings", "Settings the running consumer uses", registry=self.registry
        )
        self.server: Any = None
        self._lag_checked = 0.0
        if port:
            try:
                self.server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
            except OSError as exc:
                raise StackError(
                    "consumer",
                    f"metrics port 127.0.0.1:{port} is not free ({exc.strerror}; another "
                    "`event-processor consume` on this host?)",
                    "set EP_METRICS_PORT to a free port, or pass --metrics-port 0 for none",
                ) from None

    def applied_batch(self, batch: Any, rows: list[list[Any]]) -> None:
        """Rows of ``timings.EVENT_COLUMNS`` (T0..T2 at 5..7) of one TimingBatch."""
        if not rows:
            return
        counts = collections.Counter(map(itemgetter(0, 1), rows))  # (table, op) -> events
        t3, t5 = batch.t3_us, batch.t5_us
        self.stages.record_same("processing", t5 - t3, len(rows))  # one per batch
        if len(rows) < VECTOR_MIN_ROWS:
            capture, kafka, lag, _processing, e2e = self.stages.recorders()
            for r in rows:
                t0, t1, t2 = r[5], r[6], r[7]
                capture(t1 - t0)
                kafka(t2 - t1)
                lag(t3 - t2)
                e2e(t5 - t0)
        else:
            # One column at a time, read in C (itemgetter): a 2-D array from a list of
            # row slices cost ~2.5x as much.
            size = len(rows)
            t0_us = np.fromiter(map(itemgetter(5), rows), np.int64, size)
            t1_us = np.fromiter(map(itemgetter(6), rows), np.int64, size)
            t2_us = np.fromiter(map(itemgetter(7), rows), np.int64, size)
            self.stages.record_many("capture", t1_us - t0_us)
            self.stages.record_many("kafka", t2_us - t1_us)
            self.stages.record_many("consumer_lag", t3 - t2_us)
            self.stages.record_many("end_to_end", t5 - t0_us)
        for (table, op), n in counts.items():
            self.events.labels(table, op).inc(n)

    def effective_settings(self, values: dict[str, int | float | str]) -> None:
        self.settings_info.info({k: str(v) for k, v in values.items()})

    def cost(self, instrumentation_s: float, batch_s: float) -> None:
        self.instrumentation.inc(instrumentation_s)
        self.batch_time.inc(batch_s)

    def retry(self, _msg: str) -> None:
        self.errors.inc()

    def dead_lettered(self) -> None:
        self.dlq.inc()

    def duplicate(self) -> None:
        self.dupes.inc()

    def rekeyed(self) -> None:
        self.rekeys.inc()

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


# Below this many rows a batch's stage latencies are recorded one by one (numpy's fixed
# cost is larger than the loop's for a handful of events).
VECTOR_MIN_ROWS = 64


class StageHistograms:
    """Per-stage latency histograms exported as `ep_stage_latency_seconds`.

    prometheus_client's Histogram.observe walks its buckets in Python (~0.6 µs); five
    stages per event made the harness's own cost approach 5 % of the consumer's time.
    Here an observation is one C bisect and two additions; the exposition is built
    only when Prometheus scrapes.
    """

    def __init__(self) -> None:
        self._bounds_us = [int(b * 1e6) for b in BUCKETS_S]
        self._bounds_np = np.asarray(self._bounds_us, dtype=np.int64)
        self._counts = {s: [0] * (len(BUCKETS_S) + 1) for s in STAGES}
        self._sums = dict.fromkeys(STAGES, 0)

    def record_many(self, stage: str, values_us: np.ndarray) -> None:
        values = np.maximum(values_us, 0)
        slots = np.bincount(
            np.searchsorted(self._bounds_np, values, side="left"),
            minlength=len(self._bounds_us) + 1,
        )
        counts = self._counts[stage]
        for i in np.flatnonzero(slots):
            counts[i] += int(slots[i])
        self._sums[stage] += int(values.sum())

    def record_same(self, stage: str, value_us: int, count: int) -> None:
        value_us = max(value_us, 0)
        self._counts[stage][bisect.bisect_left(self._bounds_us, value_us)] += count
        self._sums[stage] += value_us * count

    def recorders(self) -> list[Any]:
        bounds = self._bounds_us

        def make(stage: str) -> Any:
            counts, sums = self._counts[stage], self._sums

            def record(us: int) -> None:
                if us < 0:
                    us = 0
                counts[bisect.bisect_left(bounds, us)] += 1
                sums[stage] += us

            return record

        return [make(s) for s in STAGES]

    def collect(self) -> Any:
        family = HistogramMetricFamily(
            "ep_stage_latency_seconds", "Per-stage latency", labels=["stage"]
        )
        for stage in STAGES:
            cumulative, buckets = 0, []
            for bound, n in zip([*BUCKETS_S, float("inf")], self._counts[stage], strict=True):
                cumulative += n
                buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
            family.add_metric([stage], buckets, self._sums[stage] / 1e6)
        yield family
