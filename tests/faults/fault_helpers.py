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


def wait_s(seconds: float) -> None:
    """A deliberate pause inside a fault (the fault's duration), not a readiness wait."""
    time.sleep(seconds)


class FaultProbe:
    """Measures a fault: events in flight when it hit, duplicates absorbed, recovery time."""

    def __init__(self, settings: Settings, name: str) -> None:
        from event_processor.consumer.timings import TimingCollector

        self.settings = settings
        self.name = name
        self.collector = TimingCollector(settings.kafka_servers(), settings.timings_topic)
        self.collector.seek(self.collector.mark_end())
        self.stamps: list[tuple[int, int]] = []  # (t0, t5) of every applied event
        self.fault_us = 0
        self.restored_us = 0
        self.in_flight = 0

    def drain(self) -> None:
        self.stamps.extend((r.t0_us, r.t5_us) for r in self.collector.poll(100))

    def fault(self, load: BackgroundLoad) -> None:
        """Call right before injecting the fault."""
        from event_processor.metrics.timing import wall_us

        self.drain()
        self.fault_us = wall_us()
        applied_rows = sum(1 for _, t5 in self.stamps if t5 <= self.fault_us)
        committed_rows = sum(s.rows for s in load.sends if s.committed_us <= self.fault_us)
        self.in_flight = max(0, committed_rows - applied_rows)

    def restored(self) -> None:
        """Call right after the faulty component is back (or the fault ends)."""
        from event_processor.metrics.timing import wall_us

        self.restored_us = wall_us()

    def recovery_s(self) -> float | None:
        """From restoration until the first change committed after it was applied."""
        self.drain()
        fresh = [t5 for t0, t5 in self.stamps if t0 >= self.restored_us]
        return round((min(fresh) - self.restored_us) / 1e6, 3) if fresh else None

    def finish(self, duplicates: float, lost: int, mismatched: int) -> dict[str, Any]:
        import json

        from event_processor.settings import PROJECT_ROOT

        row = {
            "fault": self.name,
            "in_flight": self.in_flight,
            "lost": lost,
            "mismatched": mismatched,
            "duplicates_absorbed": int(duplicates),
            "recovery_s": self.recovery_s(),
        }
        self.collector.close()
        out = PROJECT_ROOT / "reports" / "faults.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"fault table row: {row}")
        return row
