"""Brings the whole stack up and down, and reports its health.

Services given by configuration (EP_PG_DSN, EP_KAFKA_BOOTSTRAP, EP_CONNECT_URL,
EP_MONGO_URI) are used as they are; only the missing ones are started locally.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from event_processor.errors import StackError
from event_processor.settings import Settings
from event_processor.stack import connect, ferretdb, jvm, kafka, postgres, process

SERVICES = ("postgres", "kafka", "connect", "ferretdb-pg", "ferretdb")


@dataclass
class UpReport:
    lines: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def _external(settings: Settings, service: str) -> bool:
    return {
        "postgres": settings.pg_external,
        "kafka": settings.kafka_external,
        "connect": settings.connect_external,
        "ferretdb": settings.mongo_external,
        "ferretdb-pg": settings.mongo_external,
    }[service]


def up(settings: Settings, say: Callable[[str, str], None] | None = None) -> UpReport:
    """Start what is not external and not running; register the connector. Idempotent."""
    report = UpReport()
    started = time.monotonic()
    provision_log = settings.state_dir / "provision.log"
    settings.state_dir.mkdir(parents=True, exist_ok=True)

    def step(name: str, action: Callable[[], str]) -> None:
        t = time.monotonic()
        if say:
            say(name, "starting…")
        line = action()
        line = f"{line} in {time.monotonic() - t:.1f} s"
        report.lines.append((name, line))
        if say:
            say(name, line)

    def external(name: str, check: Callable[[], tuple[bool, str]], target: str) -> None:
        ok, detail = check()
        if not ok:
            raise StackError(name, f"external endpoint {target} is not usable: {detail}",
                             f"check the EP_* setting for {name}")  # fmt: skip
        report.lines.append((name, f"external {target}: {detail}"))
        if say:
            say(name, f"external, {detail}")

    # Every configured endpoint is checked before anything local starts: a bad one
    # must not leave a half-started stack behind.
    if settings.pg_external:
        external("postgres", lambda: postgres.health(settings.postgres_dsn()), "(EP_PG_DSN)")
    if settings.kafka_external:
        external("kafka", lambda: kafka.health(settings.kafka_servers()), settings.kafka_servers())
    if settings.connect_external:

        def connect_check() -> tuple[bool, str]:
            ok, detail, _ = connect.health(settings)
            return (ok or detail == "ready"), detail

        external("connect", connect_check, settings.connect_endpoint())
    if settings.mongo_external:
        external("mongo", lambda: ferretdb.health(settings.mongodb_uri()), "(EP_MONGO_URI)")
    if not settings.pg_external:
        step("postgres", lambda: postgres.start(settings))
    if say:
        for name, note in first_start_notes(settings):
            say(name, note)
    if not settings.kafka_external:
        step("kafka", lambda: kafka.start(settings, provision_log))
    if not settings.connect_external:
        step("connect", lambda: connect.start(settings, provision_log))
    if not settings.mongo_external:
        step("ferretdb", lambda: ferretdb.start(settings, provision_log))
    step("debezium", lambda: "connector " + connect.register_connector(settings))
    report.seconds = time.monotonic() - started
    return report


def first_start_notes(settings: Settings) -> list[tuple[str, str]]:
    """What a first start will download or build, and how long it took on a fresh
    2-vCPU machine of the project's kind (session 6: stack up 188 s in all), so a long
    silent step reads as work, not a hang. Nothing is said once the caches exist."""
    notes = []
    needs_jvm = not (settings.kafka_external and settings.connect_external)
    if needs_jvm and not (jvm.jar_cache(settings) / ".complete").exists():
        notes.append(("kafka", f"first start: Maven resolves Kafka {settings.kafka_version} "
                      f"and Debezium {settings.debezium_version} (usually under a minute; "
                      f"cached in {settings.cache_dir})"))  # fmt: skip
    if not settings.mongo_external and not ferretdb.binary_path(settings).exists():
        version = settings.ferretdb_version
        notes.append(("ferretdb", f"first start: Go builds FerretDB {version} from the Go "
                      "module proxy (usually 1-2 minutes; cached afterwards)"))  # fmt: skip
    return notes


def down(settings: Settings, purge: bool = False) -> list[tuple[str, str]]:
    """Stop the local services we started (by PID, reverse order); optionally purge data."""
    result = []
    from event_processor.race import worker as race_worker

    stoppers = {
        "race-connect": race_worker.stop,  # left by an interrupted race
        "ferretdb": ferretdb.stop,
        "connect": connect.stop,
        "kafka": kafka.stop,
        "postgres": postgres.stop,
    }
    for name, stop in stoppers.items():
        stopped = stop(settings)
        if stopped or name != "race-connect":
            result.append((name, "stopped" if stopped else "not running"))
    if purge:
        for name in (*SERVICES, "race-connect"):
            if name in ("postgres", "ferretdb-pg"):
                shutil.rmtree(postgres.cluster_dir(settings, name), ignore_errors=True)
            shutil.rmtree(settings.state_dir / name, ignore_errors=True)
        shutil.rmtree(settings.state_dir / "pids", ignore_errors=True)
        result.append(("state", f"purged {settings.state_dir}"))
    return result


def status(settings: Settings, cost_window_s: float = 0.0) -> dict[str, Any]:
    """Health of each service with stable keys for scripts (see README); with
    ``cost_window_s`` also what the local services cost over that window ("cost")."""

    def local(service: str) -> dict[str, Any]:
        record = process.read_pid(settings.state_dir, service)
        alive = process.is_ours_alive(record)
        info: dict[str, Any] = {"managed": not _external(settings, service)}
        if info["managed"]:
            info["pid"] = record.pid if (record and alive) else None
            info["rss_mb"] = (
                round(process.rss_mb(record.pid) or 0, 1) if (record and alive) else None
            )
            info["log"] = record.log if record else None
        return info

    pg_ok, pg_detail = postgres.health(settings.postgres_dsn())
    k_ok, k_detail = kafka.health(settings.kafka_servers())
    c_ok, c_detail, c_state = connect.health(settings)
    m_ok, m_detail = ferretdb.health(settings.mongodb_uri())
    return {
        "postgres": {
            "dsn": redact(settings.postgres_dsn()),
            "ok": pg_ok,
            "detail": pg_detail,
            **local("postgres"),
        },
        "kafka": {
            "bootstrap": settings.kafka_servers(),
            "ok": k_ok,
            "detail": k_detail,
            **local("kafka"),
        },
        "connect": {
            "url": settings.connect_endpoint(),
            "ok": c_ok,
            "detail": c_detail,
            "connector": settings.connector_name,
            "connector_state": c_state,
            **local("connect"),
        },
        "mongo": {
            "uri": redact(settings.mongodb_uri()),
            "database": settings.mongo_database,
            "ok": m_ok,
            "detail": m_detail,
            **local("ferretdb"),
        },
        "ok": pg_ok and k_ok and c_ok and m_ok,
        **({"cost": live_cost(settings, cost_window_s)} if cost_window_s > 0 else {}),
    }


def live_cost(settings: Settings, window_s: float) -> dict[str, Any]:
    """CPU share of a core and RSS per local service group over ``window_s`` seconds,
    with host utilisation and steal (the same meter as a run's ``cost`` section)."""
    import time

    from event_processor.metrics.cost import CostMeter

    meter = CostMeter(settings.state_dir)
    meter.start()
    time.sleep(window_s)
    section = meter.stop().to_json(row_changes=0)
    for group in section["groups"].values():
        group.pop("cpu_s_per_1000_row_changes", None)
    section.pop("cpu_s_per_1000_row_changes", None)
    section.pop("row_changes", None)
    return section


def redact(url: str) -> str:
    """Hide a password in a URL-style DSN or URI."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
