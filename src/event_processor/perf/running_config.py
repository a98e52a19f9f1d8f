"""The knobs a run's report records, read from the running components themselves.

The harness's own settings are not evidence: a connector registered by someone else, a
consumer started with other EP_* variables or a JVM started by hand would be misreported.
So each knob comes from where it is in force: Kafka Connect's REST API (the connector's
config), the consumer's metrics endpoint (what its clients were built with), Kafka's
metadata (partitions), and for the local stack the JVMs' command lines and the worker
properties file Connect was started with. A knob that cannot be read is left out.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from pathlib import Path

from event_processor.errors import EventProcessorError
from event_processor.settings import Settings

# Connector config key -> knob name in the report.
CONNECTOR_KNOBS = {
    "poll.interval.ms": "poll_interval_ms",
    "max.batch.size": "max_batch_size",
    "max.queue.size": "max_queue_size",
    "producer.override.linger.ms": "producer_linger_ms",
    "producer.override.acks": "producer_acks",
}
_XMX = re.compile(rb"-Xmx(\S+)")

Knob = str | int | float | bool


def _number(value: str) -> Knob:
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def connector_knobs(config: Mapping[str, str] | None) -> dict[str, Knob]:
    if not config:
        return {}
    return {knob: _number(config[key]) for key, knob in CONNECTOR_KNOBS.items() if key in config}


def consumer_knobs(reported: Mapping[str, str]) -> dict[str, Knob]:
    return {name: _number(value) for name, value in reported.items()}


def jvm_heap(cmdline: bytes) -> str | None:
    found = _XMX.findall(cmdline)
    return found[-1].decode() if found else None  # the JVM obeys the last -Xmx


def worker_property(properties: str, key: str) -> str | None:
    for line in properties.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


def _local_knobs(settings: Settings) -> dict[str, Knob]:
    """Heaps of the local JVMs and Connect's offset flush interval, from the processes
    this stack started (their PID files); nothing for external services."""
    from event_processor.stack import process

    knobs: dict[str, Knob] = {}
    for service, knob, external in (
        ("kafka", "kafka_heap", settings.kafka_external),
        ("connect", "connect_heap", settings.connect_external),
    ):
        record = None if external else process.read_pid(settings.state_dir, service)
        if record is None or not process.is_ours_alive(record):
            continue
        try:
            cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        heap = jvm_heap(cmdline)
        if heap:
            knobs[knob] = heap
        if service == "connect":
            try:
                flush = worker_property(Path(record.marker).read_text(), "offset.flush.interval.ms")
            except OSError:
                flush = None
            if flush is not None:
                knobs["offset_flush_interval_ms"] = _number(flush)
    return knobs


def running_knobs(settings: Settings, consumer_reported: Mapping[str, str]) -> dict[str, Knob]:
    """Every knob readable from the running stack (see the module docstring)."""
    from event_processor.stack import connect
    from event_processor.testing import change_topics, end_offsets

    knobs: dict[str, Knob] = {}
    with contextlib.suppress(EventProcessorError):  # Connect unreachable: left out
        knobs.update(connector_knobs(connect.current_connector_config(settings)))
    knobs.update(consumer_knobs(consumer_reported))
    try:
        partitions = end_offsets(settings, change_topics(settings))
    except Exception:  # a report is still written when the broker went away
        partitions = {}
    if partitions:
        per_topic: dict[str, int] = {}
        for topic, _partition in partitions:
            per_topic[topic] = per_topic.get(topic, 0) + 1
        knobs["change_topic_partitions"] = max(per_topic.values())
    knobs.update(_local_knobs(settings))
    return knobs
