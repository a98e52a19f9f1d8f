"""The JSON result document: what ran, on what, with which figures and gate outcomes.

Shape::

    {"schema_version", "generated_at", "commit",
     "configuration": {versions, knobs, host_cpus, python, platform, ...},
     "scenarios": [{name, events, committed, applied, dead_lettered, throughput_eps,
                    success_rate, e2e_ms: {...},
                    stages_ms: {capture, kafka, consumer_lag, processing},
                    by_kind: {...}, schedule_lag_ms: {...}, slo: {name: {...}}, passed}]}

``dead_lettered`` counts the events the run's consumer sent to the dead-letter topic
(poison, oversized, or a document the store refused) instead of applying them.
Latency summaries are in milliseconds: {count, min, mean, p50, p95, p99, p999, max}.
``write_json`` keeps ``reports/latest.json`` plus a timestamped copy per run, so a later
run can compare against any earlier one as a baseline.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from event_processor.metrics.slo import GateResult
from event_processor.metrics.stats import RunStats

if TYPE_CHECKING:
    from event_processor.settings import Settings

SCHEMA_VERSION = 1
LATEST_NAME = "latest.json"


class Summary(BaseModel):
    """One latency distribution, in milliseconds."""

    model_config = ConfigDict(extra="forbid")

    count: int = 0
    min: float = 0.0
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    p999: float = 0.0
    max: float = 0.0


class SloEntry(BaseModel):
    """One gate's outcome; ``kind`` keeps latency and integrity gates apart."""

    model_config = ConfigDict(extra="forbid")

    target: float
    measured: float | None
    passed: bool
    comparison: str = ""
    kind: str = ""
    unit: str = ""
    message: str = ""


class ScenarioResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    events: int
    committed: int | None
    applied: int
    duplicates: int = 0
    dead_lettered: int = 0  # events the consumer dead-lettered during the run
    unmatched_sends: int = 0
    throughput_eps: float
    success_rate: float | None
    duration_s: float = 0.0
    rate: float | None = None
    seed: int | None = None
    warmup_events: int = 0
    e2e_ms: Summary
    stages_ms: dict[str, Summary]
    by_table_op: dict[str, Summary] = Field(default_factory=dict)
    by_kind: dict[str, Summary] = Field(default_factory=dict)
    schedule_lag_ms: Summary = Field(default_factory=Summary)
    commit_ms: Summary = Field(default_factory=Summary)
    slo: dict[str, SloEntry] = Field(default_factory=dict)
    baseline: dict[str, SloEntry] = Field(default_factory=dict)
    passed: bool


class Configuration(BaseModel):
    """What produced the figures; extra keys are kept, so callers can add their own."""

    model_config = ConfigDict(extra="allow")

    versions: dict[str, str] = Field(default_factory=dict)
    knobs: dict[str, str | int | float | bool] = Field(default_factory=dict)
    host_cpus: int | None = None
    python: str = ""
    platform: str = ""
    endpoints: dict[str, str] = Field(default_factory=dict)  # never with credentials


class ResultDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    generated_at: str  # ISO 8601, UTC
    commit: str | None = None
    configuration: Configuration
    scenarios: list[ScenarioResult] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.scenarios)

    def scenario(self, name: str) -> ScenarioResult | None:
        return next((s for s in self.scenarios if s.name == name), None)


def _entries(gates: Iterable[GateResult]) -> dict[str, SloEntry]:
    return {
        g.name: SloEntry(
            target=g.target,
            measured=g.measured,
            passed=g.passed,
            comparison=g.comparison,
            kind=g.kind,
            unit=g.unit,
            message=g.message,
        )
        for g in gates
    }


def scenario_result(
    name: str,
    stats: RunStats,
    gates: Iterable[GateResult],
    *,
    baseline_gates: Iterable[GateResult] = (),
    rate: float | None = None,
    seed: int | None = None,
    warmup_events: int = 0,
    dead_lettered: int = 0,
) -> ScenarioResult:
    """The report entry of one scenario run; it passed when every gate passed."""
    slo = _entries(gates)
    baseline = _entries(baseline_gates)
    passed = all(e.passed for e in (*slo.values(), *baseline.values()))
    return ScenarioResult.model_validate(
        {
            **stats.to_dict(),
            "name": name,
            "rate": rate,
            "seed": seed,
            "warmup_events": warmup_events,
            "dead_lettered": dead_lettered,
            "slo": slo,
            "baseline": baseline,
            "passed": passed,
        }
    )


def git_commit(cwd: Path | None = None) -> str | None:
    """The commit under test: CI's variable if set, else ``git rev-parse HEAD``."""
    for var in ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def base_configuration(
    versions: Mapping[str, str] | None = None,
    knobs: Mapping[str, str | int | float | bool] | None = None,
    **extra: Any,
) -> Configuration:
    """Host facts (CPUs, Python, platform) plus the caller's versions and knobs."""
    from event_processor import __version__

    return Configuration(
        versions={"event_processor": __version__, **(versions or {})},
        knobs=dict(knobs or {}),
        host_cpus=os.cpu_count(),
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        **extra,
    )


_SETTINGS_VERSIONS = ("kafka_version", "debezium_version", "ferretdb_version")
_SETTINGS_KNOBS = (
    "poll_interval_ms",
    "max_batch_size",
    "max_queue_size",
    "producer_linger_ms",
    "offset_flush_interval_ms",
    "topic_partitions",
    "consumer_max_poll_records",
    "consumer_fetch_max_wait_ms",
    "kafka_heap",
    "connect_heap",
)


def configuration_from_settings(
    settings: Settings,
    versions: Mapping[str, str] | None = None,
    knobs: Mapping[str, str | int | float | bool] | None = None,
    **extra: Any,
) -> Configuration:
    """Configuration with the settings' versions and tuning knobs.

    Endpoints are recorded only as local or external: DSNs and URIs may hold secrets.
    """
    own_versions = {
        k.removesuffix("_version"): str(getattr(settings, k)) for k in _SETTINGS_VERSIONS
    }
    own_knobs = {k: getattr(settings, k) for k in _SETTINGS_KNOBS}
    endpoints = {
        "postgres": "external" if settings.pg_external else "local",
        "kafka": "external" if settings.kafka_external else "local",
        "connect": "external" if settings.connect_external else "local",
        "mongodb": "external" if settings.mongo_external else "local",
    }
    return base_configuration(
        versions={**own_versions, **(versions or {})},
        knobs={**own_knobs, **(knobs or {})},
        endpoints=endpoints,
        **extra,
    )


def build_document(
    scenarios: Iterable[ScenarioResult],
    configuration: Configuration,
    *,
    commit: str | None = None,
    generated_at: datetime | None = None,
) -> ResultDocument:
    when = (generated_at or datetime.now(UTC)).astimezone(UTC)
    return ResultDocument(
        generated_at=when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        commit=commit,
        configuration=configuration,
        scenarios=list(scenarios),
    )


def to_json(doc: ResultDocument) -> str:
    return doc.model_dump_json(indent=2) + "\n"


def parse_document(data: str | bytes | Mapping[str, Any]) -> ResultDocument:
    if isinstance(data, str | bytes):
        return ResultDocument.model_validate_json(data)
    return ResultDocument.model_validate(data)


def load_json(path: Path) -> ResultDocument:
    return parse_document(path.read_bytes())


def _stamp(generated_at: str) -> str:
    try:
        when = datetime.fromisoformat(generated_at.replace("Z", "+00:00"))
    except ValueError:
        when = datetime.now(UTC)
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _atomic_write(path: Path, text: str) -> None:
    # A reader (CI, a dashboard) must never see half a document.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json(doc: ResultDocument, reports_dir: Path) -> tuple[Path, Path]:
    """Write ``latest.json`` and ``result-<UTC stamp>.json``; returns (latest, stamped)."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    text = to_json(doc)
    base = f"result-{_stamp(doc.generated_at)}"
    stamped = reports_dir / f"{base}.json"
    n = 1
    while stamped.exists():  # two runs in one second keep both documents
        stamped = reports_dir / f"{base}-{n}.json"
        n += 1
    _atomic_write(stamped, text)
    latest = reports_dir / LATEST_NAME
    _atomic_write(latest, text)
    return latest, stamped
