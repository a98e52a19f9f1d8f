"""``run_verify``: wait for the pipeline to drain, then compare PostgreSQL with the read model."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from event_processor.errors import StackError
from event_processor.settings import Settings
from event_processor.stack.manager import redact
from event_processor.verify.compare import Outcome, compare_once
from event_processor.verify.drain import KafkaProgress, wait_for_drain
from event_processor.verify.report import DRAIN, Finding, VerifyReport


def run_verify(
    settings: Settings,
    timeout_s: float,
    json_path: Path | None = None,
    *,
    group: str | None = None,
    quiet_s: float = 1.0,
    max_findings: int = 200,
) -> VerifyReport:
    """Wait (up to ``timeout_s``) until the pipeline drained, then compare everything.

    A comparison that finds differences although the pipeline looked drained is
    repeated (after draining again) while time remains, until two in a row agree and
    Kafka did not move in between: a late event is not reported as a mismatch, a real
    one is reported after at most one extra pass. ``group`` defaults to
    ``settings.consumer_group``. Writes the JSON report to ``json_path`` when given.
    """
    import psycopg2
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    started = time.monotonic()
    deadline = started + timeout_s
    report = VerifyReport(
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        database=settings.mongo_database,
        postgres=redact(settings.postgres_dsn()),
    )
    group = group or settings.consumer_group
    try:
        watch = psycopg2.connect(settings.postgres_dsn(), application_name="ep-verify-drain")
        watch.autocommit = True
        reader = psycopg2.connect(settings.postgres_dsn(), application_name="ep-verify")
    except psycopg2.OperationalError as exc:
        raise StackError("verify", f"cannot connect to PostgreSQL: {exc}".strip(),
                         "run `event-processor stack up` or check EP_PG_DSN") from None  # fmt: skip
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongodb_uri(), serverSelectionTimeoutMS=5000, socketTimeoutMS=120_000
    )
    try:
        progress = _kafka(settings, group)
    except Exception:
        watch.close()
        reader.close()
        client.close()
        raise
    timings = {"drain_s": 0.0, "read_s": 0.0, "compare_s": 0.0}
    try:
        db = client[settings.mongo_database]
        previous: tuple[Any, ...] | None = None
        outcome: Outcome | None = None
        while True:
            t = time.monotonic()
            drain, fingerprint = wait_for_drain(settings, watch, progress, deadline, quiet_s)
            timings["drain_s"] += time.monotonic() - t
            outcome = compare_once(
                reader, db, max_findings=max_findings, schemas=settings.captured_schemas
            )
            report.attempts += 1
            for k, v in outcome.timings.items():
                timings[k] = timings.get(k, 0.0) + v
            report.drain = drain
            if not drain.drained or len(outcome.sink) == 0:
                break
            if deadline - time.monotonic() < 2 * quiet_s:
                break  # no time left to look again
            signature = (frozenset(outcome.sink.signature), fingerprint)
            if signature == previous:
                break  # the same differences twice with nothing moving: they are real
            previous = signature
    except PyMongoError as exc:
        fix = "check EP_MONGO_URI and `event-processor stack status`"
        raise StackError("verify", f"MongoDB failed during verify: {exc}", fix) from None
    except psycopg2.Error as exc:
        fix = "check EP_PG_DSN and `event-processor stack status`"
        problem = f"PostgreSQL failed during verify: {exc}".strip()
        raise StackError("verify", problem, fix) from None
    finally:
        progress.close()
        watch.close()
        reader.close()
        client.close()
    assert outcome is not None
    report.tables = outcome.tables
    report.skipped = dict(outcome.skipped)
    report.findings = list(outcome.sink.kept)
    report.finding_counts = dict(outcome.sink.counts)
    if not report.drain.drained:
        report.findings.insert(0, Finding(DRAIN, "", None, f"not drained: {report.drain.detail}"))
        report.finding_counts[DRAIN] = 1
    timings["total_s"] = time.monotonic() - started
    report.timings = timings
    if json_path is not None:
        report.write_json(json_path)
    return report


def _kafka(settings: Settings, group: str) -> KafkaProgress:
    from kafka.errors import KafkaError

    try:
        return KafkaProgress(settings, group)
    except KafkaError as exc:
        problem = f"Kafka is not usable ({type(exc).__name__}: {exc})"
        fix = "run `event-processor stack up` or check EP_KAFKA_BOOTSTRAP"
        raise StackError("verify", problem, fix) from None
