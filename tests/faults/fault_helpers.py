"""Shared pieces of the fault suite: a clean pipeline, a load running beside the fault,
and the probe that measures what the fault did."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from event_processor.metrics.timing import SendRecord
from event_processor.settings import Settings
from event_processor.source.generator import run_load, seed_catalogue
from event_processor.source.workload import WorkloadModel
from event_processor.testing import scrape_metrics


@dataclass
class BackgroundLoad:
    """An open-loop load in a thread: the fault is injected while it runs."""

    settings: Settings
    events: int
    rate: float
    seed: int = 7
    sends: list[SendRecord] = field(default_factory=list)
    error: BaseException | None = None
    thread: threading.Thread | None = None
    model: WorkloadModel | None = None

    def start(self) -> BackgroundLoad:
        self.model = model = WorkloadModel(seed=self.seed)
        seed_catalogue(self.settings.postgres_dsn(), model)
        plan = model.plan(self.events)

        def run() -> None:
            try:
                # Collected as they commit, so the probe sees what was in flight.
                run_load(self.settings.postgres_dsn(), plan, self.rate, on_sent=self.sends.append)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, name="fault-load", daemon=True)
        self.thread.start()
        return self

    def committed_before(self, at_us: int) -> int:
        return sum(1 for s in self.sends if s.committed_us <= at_us)

    def wait(self, timeout_s: float = 120) -> list[SendRecord]:
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the load did not finish"
        if self.error is not None:
            raise self.error
        return self.sends


@pytest.fixture
def background_load(clean_pipeline: Settings) -> Any:
    def start(events: int = 600, rate: float = 100) -> BackgroundLoad:
        return BackgroundLoad(clean_pipeline, events, rate).start()

    return start


def new_group() -> str:
    return f"fault-{uuid.uuid4().hex[:8]}"


def wait_consuming(settings: Settings, group: str, timeout_s: float = 60) -> None:
    """Until the group's consumer owns every change topic and has caught up: before
    that, events 'in flight' would only be events no consumer was reading yet."""
    from event_processor.perf.harness import ensure_topics
    from event_processor.testing import assigned_topics, change_topics, group_lag, wait_until

    ensure_topics(settings)
    wanted = set(change_topics(settings))
    assert wait_until(lambda: wanted <= assigned_topics(settings, group), timeout_s, 0.25), (
        f"the consumer was not assigned {sorted(wanted)} within {timeout_s:g} s"
    )
    assert wait_until(lambda: group_lag(settings, group) == 0, timeout_s, 0.25)


def wait_s(seconds: float) -> None:
    """A deliberate pause inside a fault (the fault's duration), not a readiness wait."""
    time.sleep(seconds)


VERIFY_TIMEOUT_S = 120


def duplicates_skipped(port: int) -> float:
    return scrape_metrics(port, timeout_s=2).get("ep_duplicates_skipped_total", 0.0)


def verify_ok(settings: Settings, group: str) -> tuple[int, int]:
    """The verifier must pass; returns (missing, mismatched) for the fault table."""
    from event_processor.verify import run_verify

    report = run_verify(settings, VERIFY_TIMEOUT_S, group=group)
    assert report.ok, "\n".join(report.summary_lines(max_lines=40))
    data = report.to_dict()
    return int(data.get("missing", 0) or 0), int(data.get("mismatched", 0) or 0)


class FaultProbe:
    """Measures a fault: events in flight when it hit, duplicates absorbed, recovery time.

    A thread collects every timing record (tx id, row, apply time) from before the
    fault to the end. After the restore, the probe keeps committing changes of its own
    (one customer every HEARTBEAT_S, ids the workload never uses) until one committed
    after the restore is applied: the pipeline's recovery is measured even when the
    load has finished meanwhile. All figures are computed once everything is collected.
    """

    HEARTBEAT_S = 0.2
    RECOVERY_TIMEOUT_S = 120.0

    def __init__(self, settings: Settings, name: str) -> None:
        from event_processor.consumer.timings import TimingCollector

        self.settings = settings
        self.name = name
        self.collector = TimingCollector(settings.kafka_servers(), settings.timings_topic)
        self.collector.seek(self.collector.mark_end())
        # correlation id -> (tx id, first apply time t5)
        self.applied: dict[str, tuple[int, int]] = {}
        self.fault_us = 0
        self.restored_us = 0
        self.load: BackgroundLoad | None = None
        self.heartbeats: dict[int, int] = {}  # tx id -> committed (µs), after the restore
        self.recovery: float | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._beat_halt = threading.Event()
        self._threads = [threading.Thread(target=self._collect, name="probe-collect", daemon=True)]
        self._threads[0].start()

    def _collect(self) -> None:
        from kafka.errors import KafkaError

        while not self._halt.is_set():
            try:
                records = list(self.collector.poll(100))
            except KafkaError:  # the broker is the fault: keep collecting after it
                time.sleep(0.2)
                continue
            with self._lock:
                for r in records:
                    self.applied.setdefault(r.correlation_id, (r.tx_id, r.t5_us))

    def _heartbeat(self) -> None:
        import random

        import psycopg2

        from event_processor.metrics.timing import wall_us
        from event_processor.testing import insert_customer

        next_id = 3 * 10**9 + random.randint(0, 10**8)
        conn = None
        while not self._beat_halt.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(self.settings.postgres_dsn(), connect_timeout=3)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    tx = insert_customer(cur, next_id, "fault probe")
                with self._lock:
                    self.heartbeats[tx] = wall_us()
                next_id += 1
            except psycopg2.Error:
                conn = None  # PostgreSQL is (still) away: connect again
            self._beat_halt.wait(self.HEARTBEAT_S)
        if conn is not None:
            conn.close()

    def fault(self, load: BackgroundLoad) -> None:
        """Call right before injecting the fault."""
        from event_processor.metrics.timing import wall_us

        self.load = load
        self.fault_us = wall_us()

    def restored(self) -> None:
        """Call right after the faulty component is back (or the fault ends)."""
        from event_processor.metrics.timing import wall_us

        self.restored_us = wall_us()
        beat = threading.Thread(target=self._heartbeat, name="probe-heartbeat", daemon=True)
        self._threads.append(beat)
        beat.start()

    def _first_fresh_apply(self) -> int | None:
        """When the first change committed after the restore was applied."""
        fresh = set(self.heartbeats)
        if self.load is not None:
            fresh |= {s.tx_id for s in self.load.sends if s.sent_us >= self.restored_us}
        times = [t5 for tx, t5 in self.applied.values() if tx in fresh]
        return min(times) if times else None

    def await_recovery(self) -> float | None:
        """Keep committing until a change committed after the restore is applied; the
        recovery time in seconds (None: nothing fresh applied within the timeout)."""
        if self._beat_halt.is_set():
            return self.recovery
        deadline = time.monotonic() + self.RECOVERY_TIMEOUT_S
        first = None
        while time.monotonic() < deadline:
            with self._lock:
                first = self._first_fresh_apply()
            if first is not None:
                break
            time.sleep(0.1)
        self._beat_halt.set()
        self.recovery = None if first is None else round((first - self.restored_us) / 1e6, 3)
        return self.recovery

    def _unapplied_at(self, at_us: int) -> int:
        """Row changes the generator had committed by ``at_us`` but MongoDB had not
        acknowledged by then (a row never acknowledged counts too)."""
        if self.load is None:
            return 0
        applied_by: dict[int, int] = {}
        for tx, t5 in self.applied.values():
            if t5 <= at_us:
                applied_by[tx] = applied_by.get(tx, 0) + 1
        return sum(
            max(0, s.rows - applied_by.get(s.tx_id, 0))
            for s in self.load.sends
            if s.committed_us <= at_us
        )

    def finish(self, duplicates: float, lost: int, mismatched: int) -> dict[str, Any]:
        """Stop collecting; the fault's table row (also appended to reports/)."""
        recovery = self.await_recovery()
        self._halt.set()
        for t in self._threads:
            t.join(10)
        self.collector.close()
        row = {
            "fault": self.name,
            "in_flight": self._unapplied_at(self.fault_us),
            "backlog_at_restore": self._unapplied_at(self.restored_us),
            "lost": lost,
            "mismatched": mismatched,
            "duplicates_absorbed": int(duplicates),
            "recovery_s": recovery,
            "fault_s": round((self.restored_us - self.fault_us) / 1e6, 3),
        }
        record_fault_row(row)
        return row


FAULT_ROWS: list[dict[str, Any]] = []
TABLE_COLUMNS = (
    ("fault", "fault"),
    ("in_flight", "in flight"),
    ("backlog_at_restore", "backlog at restore"),
    ("lost", "lost"),
    ("mismatched", "mismatched"),
    ("duplicates_absorbed", "duplicates absorbed"),
    ("fault_s", "fault s"),
    ("recovery_s", "recovery s"),
)


def record_fault_row(row: dict[str, Any]) -> None:
    """Keep the row for the session's table; append it to reports/faults.jsonl."""
    import json

    from event_processor.settings import PROJECT_ROOT

    FAULT_ROWS.append(row)
    out = PROJECT_ROOT / "reports" / "faults.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print("fault table row: " + fault_table_line(row))


def fault_table_line(row: dict[str, Any]) -> str:
    return " | ".join(f"{row.get(key)}" for key, _ in TABLE_COLUMNS)


def fault_table(rows: list[dict[str, Any]]) -> list[str]:
    """A Markdown table of the rows (what the closing note quotes)."""
    head = "| " + " | ".join(label for _, label in TABLE_COLUMNS) + " |"
    rule = "|" + "---|" * len(TABLE_COLUMNS)
    return [head, rule, *("| " + fault_table_line(r) + " |" for r in rows)]
