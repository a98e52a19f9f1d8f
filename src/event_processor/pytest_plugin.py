"""pytest plugin: options, fixtures for the live stack and the consumer, SLO gates, reports.

Registered as a pytest11 entry point. Unit tests need none of it; tests marked
integration / integrity / stress / fault bring the stack up once per session (or use the
endpoints configured by EP_* variables) and leave it running for the next run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from event_processor.settings import PROJECT_ROOT, Settings, get_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("event-processor", "event-processor performance and integrity suite")
    group.addoption(
        "--ep-scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these load scenarios (repeatable)",
    )
    group.addoption(
        "--slo",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an SLO for every scenario, e.g. --slo p99=150ms (repeatable)",
    )
    group.addoption(
        "--baseline",
        metavar="PATH",
        default=None,
        help="compare with an earlier reports/latest.json and fail on regressions",
    )
    group.addoption(
        "--baseline-tolerance",
        action="append",
        default=[],
        metavar="METRIC:PCT",
        help="allowed regression per metric, e.g. p95:15%% (default p50/p95/p99:15%%)",
    )
    group.addoption("--ep-reports", metavar="DIR", default=str(PROJECT_ROOT / "reports"),
                    help="where JSON results and plots are written (default reports/)")  # fmt: skip


@pytest.fixture(scope="session")
def ep_settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def ep_stack(ep_settings: Settings) -> Settings:
    """The running stack: started when needed (idempotent), left running afterwards."""
    from event_processor.stack import manager

    manager.up(ep_settings)
    return ep_settings


@pytest.fixture
def pg_conn(ep_stack: Settings) -> Iterator[Any]:
    import psycopg2

    conn = psycopg2.connect(ep_stack.postgres_dsn())
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def mongo_db(ep_stack: Settings) -> Iterator[Any]:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(ep_stack.mongodb_uri())
    yield client[ep_stack.mongo_database]
    client.close()


class ConsumerProcess:
    """A real `event-processor consume` process, stopped by its PID."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        name: str,
        group: str | None = None,
        metrics_port: int = 0,
    ) -> None:
        self.name = name
        self.log = log_dir / f"consumer-{name}.log"
        argv = [sys.executable, "-m", "event_processor.cli", "consume",
                "--metrics-port", str(metrics_port), "--consumer-id", name]  # fmt: skip
        if group:
            argv += ["--group", group]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     env={**os.environ}, cwd=PROJECT_ROOT)  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        return int(self.proc.returncode)

    def kill(self) -> None:
        self.stop(signal.SIGKILL, 5)


@pytest.fixture
def start_consumer(ep_stack: Settings, tmp_path: Path) -> Iterator[Any]:
    """Factory: start consumer processes for one test; all are stopped afterwards."""
    started: list[ConsumerProcess] = []

    def start(name: str = "c1", group: str | None = None, metrics_port: int = 0) -> ConsumerProcess:
        proc = ConsumerProcess(ep_stack, tmp_path, name, group, metrics_port)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll a condition (never a bare sleep); True when it held within the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def group_assignment(settings: Settings, group: str) -> dict[str, set[str]]:
    """client id -> the topics it was assigned, as the group coordinator sees it."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        info = admin.describe_groups([group]).get(group, {})
    finally:
        admin.close()
    if info.get("group_state") != "Stable":
        return {}
    return {
        m["client_id"]: {a["topic"] for a in m["member_assignment"]["assigned_partitions"]}
        for m in info.get("members", [])
    }


def group_lag(settings: Settings, group: str) -> int | None:
    """Messages the group has not committed yet over the change topics (None: unknown)."""
    import re

    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers(), group_id=None)
    try:
        topics = [t for t in consumer.topics() if re.match(settings.change_topic_pattern(), t)]
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        ends = consumer.end_offsets(parts)
        committed = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        consumer.close()
        admin.close()
    if not committed:
        return None
    lag = 0
    for tp, end in ends.items():
        meta = committed.get(tp)
        offset = getattr(meta, "offset", None) if meta is not None else None
        lag += end - (offset if offset is not None and offset >= 0 else 0)
    return lag
