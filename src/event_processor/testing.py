"""Helpers for the harness and the tests: the consumer process, waiting, ports, Kafka
consumer groups and Prometheus scraping. Public: tests and the harness import them here.

A run starts one `event-processor consume` process in a fresh consumer group whose
offsets the harness commits at the current end of every change topic first: the read
model was just emptied, so the consumer must apply only what happens from now on, and
it must do so from the first event even if load starts right after it joined (a plain
``auto_offset_reset=latest`` would resolve "latest" lazily, after the first events
may already be in the log).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

from event_processor.settings import PROJECT_ROOT, Settings

# --- waiting and ports ------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll a condition (never a bare sleep); True when it held within the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the consumer process ---------------------------------------------------------------


class ConsumerProcess:
    """One real `event-processor consume` process; stopped by its PID, never by name."""

    def __init__(
        self,
        name: str,
        log_path: Path,
        *,
        group: str | None = None,
        metrics_port: int = 0,
        env: Mapping[str, str] | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        """``argv`` runs another consumer program instead of ours (a race peer)."""
        self.group = group
        self.name = name
        self.log_path = log_path
        self.metrics_port = metrics_port
        if argv is None:
            argv = [sys.executable, "-m", "event_processor.cli", "consume",
                    "--metrics-port", str(metrics_port), "--consumer-id", name]  # fmt: skip
            if group:
                argv += ["--group", group]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._out: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            list(argv),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=PROJECT_ROOT,
        )

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float | None:
        """User + system CPU the process used so far (Linux /proc; None elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # Fields 14 and 15 (utime, stime), counted from the state field (3) after ")".
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        """Counters and gauges of the process's Prometheus endpoint, summed over labels
        ({} without an endpoint or when it does not answer)."""
        if not self.metrics_port:
            return {}
        return scrape_metrics(self.metrics_port)

    def effective_settings(self) -> dict[str, str]:
        """The knobs the process reports it runs with ({} without an endpoint)."""
        if not self.metrics_port:
            return {}
        return scrape_info(self.metrics_port, "ep_consumer_settings")

    def last_lines(self, n: int = 5) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in lines[-n:] if line.strip())

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        """``sig`` (SIGTERM: the consumer drains and exits), SIGKILL after ``timeout_s``."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._out.closed:
            self._out.close()
        return int(self.proc.returncode if self.proc.returncode is not None else -1)

    def kill(self) -> None:
        self.stop(signal.SIGKILL, 5)


# --- Prometheus -------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {sample name: value summed over its labels}.

    Sample names as exposed (a counter ``x`` is ``x_total``, a histogram's parts are
    ``x_bucket``, ``x_count`` and ``x_sum``).
    """
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


def _exposition(port: int, timeout_s: float) -> str | None:
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def scrape_info(port: int, name: str, timeout_s: float = 5) -> dict[str, str]:
    """The labels of Info metric ``name`` at ``http://127.0.0.1:<port>/metrics``
    ({} when it does not answer or has no such metric). The text format exposes an Info
    as a gauge named ``<name>_info``."""
    text = _exposition(port, timeout_s)
    if text is None:
        return {}
    for family in text_string_to_metric_families(text):
        if family.name in (name, f"{name}_info") and family.samples:
            return dict(family.samples[0].labels)
    return {}


def scrape_metrics(port: int, timeout_s: float = 5) -> dict[str, float]:
    """:func:`parse_metrics` of ``http://127.0.0.1:<port>/metrics`` ({} when it does not
    answer)."""
    text = _exposition(port, timeout_s)
    return {} if text is None else parse_metrics(text)


# --- Kafka consumer groups --------------------------------------------------------------


def new_group(scenario: str) -> str:
    """A consumer group no one used before: ``ep-perf-<scenario>-<random>``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", scenario) or "run"
    return f"ep-perf-{safe}-{uuid.uuid4().hex[:8]}"


def change_topics(settings: Settings) -> list[str]:
    """The existing Debezium change topics the consumer subscribes to, sorted."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers(), group_id=None)
    try:
        pattern = re.compile(settings.change_topic_pattern())
        return sorted(t for t in consumer.topics() if pattern.match(t))
    finally:
        consumer.close()


def end_offsets(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> log end offset."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers(), group_id=None)
    try:
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        ends = consumer.end_offsets(parts) if parts else {}
        return {(tp.topic, tp.partition): int(off) for tp, off in ends.items()}
    finally:
        consumer.close()


def commit_at_end(settings: Settings, group: str, topics: list[str]) -> int:
    """Commit ``group``'s offsets at the end of ``topics``; returns the partitions set."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers(), group_id=group, enable_auto_commit=False
    )
    try:
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        if not parts:
            return 0
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        consumer.commit({tp: OffsetAndMetadata(int(off), "", -1) for tp, off in ends.items()})
        return len(parts)
    finally:
        consumer.close(autocommit=False)


def commit_offsets(settings: Settings, group: str, topic: str, offsets: Mapping[int, int]) -> None:
    """Commit ``group``'s offsets on ``topic`` (partition -> offset): where it starts."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers(), group_id=group, enable_auto_commit=False
    )
    try:
        parts = {TopicPartition(topic, p): off for p, off in offsets.items()}
        consumer.assign(list(parts))
        consumer.commit({tp: OffsetAndMetadata(int(off), "", -1) for tp, off in parts.items()})
    finally:
        consumer.close(autocommit=False)


def group_exists(admin: Any, group: str) -> bool:
    """Whether the group coordinator lists ``group`` (``admin``: a KafkaAdminClient)."""
    return any(g.get("group_id") == group for g in admin.list_groups())


def delete_group(settings: Settings, group: str, timeout_s: float = 15.0) -> None:
    """Delete a consumer group once its members left (a deleted connector's task needs a
    moment); a group that does not exist is fine."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        deadline = time.monotonic() + timeout_s
        while group_exists(admin, group):
            with contextlib.suppress(KafkaError):  # non-empty yet: try again
                admin.delete_groups([group])
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        admin.close()


def group_assignment(settings: Settings, group: str) -> dict[str, set[str]]:
    """client id -> the topics it was assigned, as the group coordinator sees it
    (empty while the group is rebalancing)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        info = admin.describe_groups([group]).get(group, {})
    finally:
        admin.close()
    if info.get("group_state") != "Stable":
        return {}
    return {
        m["client_id"]: {
            a["topic"]
            for a in m["member_assignment"]["assigned_partitions"]
            if a.get("partitions", [0])  # a topic listed with no partition is not assigned
        }
        for m in info.get("members", [])
    }


def assigned_topics(settings: Settings, group: str) -> set[str]:
    """Topics assigned to the members of a Stable group (empty while rebalancing)."""
    return set().union(*group_assignment(settings, group).values())


def active_members(settings: Settings, group: str) -> int:
    """How many consumers are members of ``group`` right now (0 when it is empty)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        info = admin.describe_groups([group]).get(group, {})
    finally:
        admin.close()
    return len(info.get("members", []) or [])


def group_lag(settings: Settings, group: str) -> int:
    """Messages the group has not committed yet over the change topics."""
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
    # A partition the group never committed counts from offset 0 (no change topic at
    # all, as on a fresh stack, is lag 0).
    lag = 0
    for tp, end in ends.items():
        meta = committed.get(tp)
        offset = getattr(meta, "offset", None) if meta is not None else None
        lag += end - (offset if offset is not None and offset >= 0 else 0)
    return lag


# --- the source ---------------------------------------------------------------------------


def insert_customer(
    cur: Any, cid: int, name: str = "Ada", address: dict[str, Any] | None = None
) -> int:
    """Insert one customer with an explicit id (a range the workload never uses);
    returns its transaction id as Debezium reports it (source.txId)."""
    import json
    import uuid

    cur.execute(
        "INSERT INTO customers (id, email, full_name, address, tier) OVERRIDING SYSTEM VALUE "
        "VALUES (%s, %s, %s, %s, 'silver') RETURNING txid_current() %% 4294967296",
        (cid, f"{cid}-{uuid.uuid4().hex[:6]}@example.com", name,
         json.dumps(address if address is not None else {"city": "Oslo"})),
    )  # fmt: skip
    return int(cur.fetchone()[0])
