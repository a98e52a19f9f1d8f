"""Kafka Connect (distributed mode) with Debezium's PostgreSQL connector over pgoutput."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from event_processor.errors import StackError
from event_processor.settings import Settings
from event_processor.stack import jvm, process

SERVICE = "connect"
log = logging.getLogger(__name__)
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"

# Tables whose changes are embedded into the order document. They are routed to one
# topic keyed by order id so that every change of one order lands in one partition,
# in commit order: the consumer can then fold them without cross-topic races.
AGGREGATE_TABLES = ("orders", "order_items", "payments")


def worker_properties(
    settings: Settings, plugin_path: Path, group: str = "ep-connect", port: int | None = None
) -> str:
    """A distributed worker of cluster ``group`` (its storage topics are named after it)."""
    port = port or settings.connect_port
    return "\n".join(
        [
            f"bootstrap.servers={settings.kafka_servers()}",
            f"group.id={group}",
            f"key.converter={JSON_CONVERTER}",
            f"value.converter={JSON_CONVERTER}",
            "key.converter.schemas.enable=false",
            "value.converter.schemas.enable=false",
            f"config.storage.topic={group}-configs",
            f"offset.storage.topic={group}-offsets",
            f"status.storage.topic={group}-status",
            "config.storage.replication.factor=1",
            "offset.storage.replication.factor=1",
            "status.storage.replication.factor=1",
            # The slot's confirmed LSN moves only when offsets flush (default 60 s).
            f"offset.flush.interval.ms={settings.offset_flush_interval_ms}",
            # Default 300 s: a restarted worker would wait 5 min before running tasks.
            "scheduled.rebalance.max.delay.ms=0",
            f"listeners=http://127.0.0.1:{port}",
            "rest.advertised.host.name=127.0.0.1",
            f"rest.advertised.port={port}",
            f"plugin.path={plugin_path}",
            "",
        ]
    )


def connector_config(settings: Settings) -> dict[str, str]:
    """The Debezium PostgreSQL source connector, tuned for latency (see README)."""
    dsn = urlparse(settings.postgres_dsn())
    prefix = settings.topic_prefix
    esc = prefix.replace(".", r"\.")
    children = "|".join(t for t in AGGREGATE_TABLES if t != "orders")
    config = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": dsn.hostname or "127.0.0.1",
        "database.port": str(dsn.port or 5432),
        "database.user": dsn.username or "postgres",
        "database.password": dsn.password or "",
        "database.dbname": (dsn.path or "/").lstrip("/") or settings.pg_database,
        "topic.prefix": prefix,
        "slot.name": settings.slot_name,
        "publication.name": f"{settings.slot_name}_pub",
        # all_tables also captures tables created after the connector started.
        "publication.autocreate.mode": "all_tables",
        # A partitioned table's changes carry the parent's name (one collection), not
        # each partition's (see stack.postgres.publish_via_partition_root for an
        # existing publication).
        "publish.via.partition.root": "true",
        "snapshot.mode": "initial",
        # TRUNCATE reaches the read model (Debezium skips it by default: "t").
        "skipped.operations": "none",
        "decimal.handling.mode": "string",
        "interval.handling.mode": "string",
        "hstore.handling.mode": "json",
        # Default 500 ms: a lone event would wait up to ~2x that in Debezium's queue.
        "poll.interval.ms": str(settings.poll_interval_ms),
        "max.batch.size": str(settings.max_batch_size),
        "max.queue.size": str(settings.max_queue_size),
        "heartbeat.interval.ms": "5000",
        # Debezium 3.x adds four context headers to every record (connector, task, ...):
        # nothing here reads them, and parsing them was ~15 % of our consumer's CPU per
        # row on a backlog (kafka-python decodes headers in Python).
        "extended.headers.enabled": "false",
        "producer.override.linger.ms": str(settings.producer_linger_ms),
        "producer.override.acks": "all",
        # No schema in the values: it was ~80 % of every message's bytes, serialised by
        # Connect (Jackson was a quarter of its CPU), stored by Kafka and parsed by the
        # consumer. The consumer reads column types from the catalogue instead
        # (consumer.column_types). Keys stay schemaless so that equal keys are
        # byte-equal across tables.
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
        "topic.creation.default.partitions": str(settings.topic_partitions),
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.message.timestamp.type": "LogAppendTime",
        # Key order items and payments by their order, then route the three tables
        # of the order aggregate to one topic.
        "message.key.columns": ";".join(f"public.{t}:order_id" for t in children.split("|")),
        # transaction.total_order in every change event: the identity of a row change
        # within its transaction (rows of one COPY share an LSN). The BEGIN/END
        # records Debezium also emits are dropped before they reach Kafka.
        "provide.transaction.metadata": "true",
        "transforms": "dropTxMarkers,orderKey,aggregate",
        "transforms.dropTxMarkers.type": "org.apache.kafka.connect.transforms.Filter",
        "transforms.dropTxMarkers.predicate": "isTxMarker",
        "transforms.orderKey.type": "org.apache.kafka.connect.transforms.ReplaceField$Key",
        "transforms.orderKey.renames": "order_id:id",
        "transforms.orderKey.predicate": "isOrderChild",
        "transforms.aggregate.type": "io.debezium.transforms.ByLogicalTableRouter",
        "transforms.aggregate.topic.regex": rf"{esc}\.public\.({'|'.join(AGGREGATE_TABLES)})",
        "transforms.aggregate.topic.replacement": f"{prefix}.aggregate.orders",
        "transforms.aggregate.key.enforce.uniqueness": "false",
        "predicates": "isOrderChild,isTxMarker",
        "predicates.isTxMarker.type": (
            "org.apache.kafka.connect.transforms.predicates.TopicNameMatches"
        ),
        "predicates.isTxMarker.pattern": rf"{esc}\.transaction",
        "predicates.isOrderChild.type": (
            "org.apache.kafka.connect.transforms.predicates.TopicNameMatches"
        ),
        "predicates.isOrderChild.pattern": rf"{esc}\.public\.({children})",
    }
    if settings.captured_schemas:
        config["schema.include.list"] = ",".join(settings.captured_schemas)
    return config


def _http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def ready(url: str) -> bool:
    info = _http("GET", url + "/", timeout=3)
    _http("GET", url + "/connectors", timeout=3)  # answers only once the worker joined
    return bool(info and "version" in info)


def start(settings: Settings, log_provision: Path) -> str:
    if running := process.already_running(settings.state_dir, SERVICE):
        return running
    process.ensure_port_free("connect", settings.connect_port, "EP_CONNECT_PORT")
    record = start_worker(settings, SERVICE, "ep-connect", settings.connect_port,
                          settings.connect_heap, log_provision)  # fmt: skip
    return f"started (pid {record.pid})"


def start_worker(
    settings: Settings, service: str, cluster: str, port: int, heap: str, log_provision: Path
) -> process.PidRecord:
    """Start a distributed worker of ``cluster`` on ``port`` (state in ``<state>/<service>``)
    and wait until its REST API answers; the stack's worker and the race's own."""
    base = settings.state_dir / service
    cache = jvm.ensure_jars(settings, log_provision)
    base.mkdir(parents=True, exist_ok=True)
    props = base / "worker.properties"
    props.write_text(worker_properties(settings, cache / "plugins", cluster, port))
    log4j = jvm.write_log4j(base / "log4j2.properties")
    log = base / "connect.log"
    argv = jvm.java_argv(
        settings, heap, log4j, "org.apache.kafka.connect.cli.ConnectDistributed", str(props)
    )
    record = process.spawn(settings.state_dir, service, argv, log, str(props))
    endpoint = f"http://127.0.0.1:{port}"
    process.wait_ready(service, lambda: ready(endpoint), 180, record, log)
    return record


def stop(settings: Settings) -> bool:
    return process.stop_pid(process.read_pid(settings.state_dir, SERVICE), timeout_s=60)


def _get_or_none(url: str, timeout: float) -> Any:
    """GET a Connect resource; None when it does not exist (404)."""
    try:
        return _http("GET", url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def connector_status(settings: Settings, name: str | None = None) -> dict[str, Any] | None:
    name = name or settings.connector_name
    url = f"{settings.connect_endpoint()}/connectors/{name}/status"
    status: dict[str, Any] | None = _get_or_none(url, timeout=5)
    return status


def connector_state(status: dict[str, Any] | None) -> str:
    if status is None:
        return "MISSING"
    states = [status.get("connector", {}).get("state", "?")]
    states += [t.get("state", "?") for t in status.get("tasks", [])]
    if not status.get("tasks"):
        return "NO_TASKS"
    return "RUNNING" if all(s == "RUNNING" for s in states) else ",".join(states)


def current_connector_config(settings: Settings) -> dict[str, str] | None:
    """The connector's config as Connect holds it (None: not registered)."""
    base = settings.connect_endpoint()
    try:
        config: dict[str, str] | None = _get_or_none(
            f"{base}/connectors/{settings.connector_name}/config", timeout=10
        )
    except OSError as exc:
        raise StackError(
            "connect", f"cannot reach Kafka Connect at {base}: {exc}", "check EP_CONNECT_URL"
        ) from None
    return config


def _tasks_configured(settings: Settings, name: str, wanted: dict[str, str]) -> bool:
    """Every task runs with ``wanted``'s values (tasks are re-created after a PUT)."""
    url = f"{settings.connect_endpoint()}/connectors/{name}/tasks"
    tasks = _get_or_none(url, timeout=5) or []
    return bool(tasks) and all(
        t.get("config", {}).get(k, v) == v for t in tasks for k, v in wanted.items()
    )


def failed_task_trace(status: dict[str, Any] | None) -> str | None:
    """The first line of the first FAILED task's trace (None while no task failed)."""
    for task in (status or {}).get("tasks", []):
        if task.get("state") == "FAILED":
            trace = (task.get("trace") or "").strip()
            return trace.splitlines()[0] if trace else "no trace"
    return None


def register_connector(
    settings: Settings, timeout_s: float = 90, config: dict[str, str] | None = None
) -> str:
    """PUT the Debezium source connector's config (idempotent) and wait until its task
    runs with it. ``config`` defaults to ``connector_config(settings)``; a sweep passes a
    tuned one, and the original one to restore it."""
    from event_processor.stack import postgres

    warning = postgres.publish_via_partition_root(settings)
    if warning:
        log.warning("debezium: %s", warning)
    wanted = config if config is not None else connector_config(settings)
    return put_connector(settings, settings.connector_name, wanted, "debezium", timeout_s)


def put_connector(
    settings: Settings,
    name: str,
    wanted: dict[str, str],
    component: str,
    timeout_s: float = 90,
) -> str:
    """PUT a connector's config (only when it differs) and wait until its tasks run."""
    base = settings.connect_endpoint()
    url = f"{base}/connectors/{name}/config"
    try:
        # Re-PUTting an unchanged config restarts the task for nothing (and, right after
        # a worker restart, races its recovery): only write when something differs.
        current = _get_or_none(url, timeout=10)
        # Extra keys count too: a key set by hand (or by an earlier version) stays in
        # force until the whole config is written again.
        held = {k: v for k, v in (current or {}).items() if k != "name"}
        if current is None or held != {k: v for k, v in wanted.items() if k != "name"}:
            _http("PUT", url, wanted, timeout=30)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:400]
        raise StackError(
            "connect",
            f"registering connector {name} failed: {detail}",
            "read the Connect log",
        ) from None
    except OSError as exc:
        raise StackError(
            "connect", f"cannot reach Kafka Connect at {base}: {exc}", "check EP_CONNECT_URL"
        ) from None
    deadline = time.monotonic() + timeout_s
    state = "MISSING"
    while time.monotonic() < deadline:
        try:
            status = connector_status(settings, name)
            state = connector_state(status)
            if state == "RUNNING" and _tasks_configured(settings, name, wanted):
                return state
        except urllib.error.HTTPError as exc:
            # 409/500 while the worker rebalances the re-created task: ask again.
            if exc.code < 409:
                raise
            state, status = f"HTTP {exc.code}", None
        trace = failed_task_trace(status)
        if trace is not None:
            raise StackError(component, f"connector task failed: {trace} ({name})",
                             "read the Connect log")  # fmt: skip
        time.sleep(0.3)
    raise StackError(component, f"connector {name} not running after {timeout_s:.0f} s "
                     f"(state {state})", "read the Connect log")  # fmt: skip


def delete_connector(settings: Settings, name: str, timeout_s: float = 30) -> bool:
    """DELETE a connector and wait until Connect no longer lists it; False if it was absent."""
    base = settings.connect_endpoint()
    try:
        _http("DELETE", f"{base}/connectors/{name}", timeout=30)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        detail = exc.read().decode(errors="replace")[:400]
        raise StackError("connect", f"deleting connector {name} failed: {detail}",
                         "read the Connect log") from None  # fmt: skip
    except OSError as exc:
        raise StackError(
            "connect", f"cannot reach Kafka Connect at {base}: {exc}", "check EP_CONNECT_URL"
        ) from None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if connector_status(settings, name) is None:
            return True
        time.sleep(0.2)
    raise StackError("connect", f"connector {name} still listed {timeout_s:.0f} s after "
                     "DELETE", "read the Connect log")  # fmt: skip


def health(settings: Settings) -> tuple[bool, str, str]:
    try:
        ready(settings.connect_endpoint())
        state = connector_state(connector_status(settings))
    except (OSError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}", "UNKNOWN"
    return state == "RUNNING", "ready", state
