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
from event_processor.metrics.stats import LatencySummary, RunStats

if TYPE_CHECKING:
    from event_processor.settings import Settings

SCHEMA_VERSION = 1
LATEST_NAME = "latest.json"


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


class HarnessCost(BaseModel):
    """What the harness's own measuring cost during a run (see perf.harness.harness_cost).

    ``instrumentation_pct``: time the consumer spent building, publishing and counting
    timing records, in percent of its whole batch processing time (its
    ``ep_instrumentation_seconds`` / ``ep_batch_processing_seconds`` counters).
    ``collector_pct``: CPU the harness's collector thread used to read the timing topic
    back, in percent of the CPU the consumer process used.
    """

    model_config = ConfigDict(extra="forbid")

    instrumentation_s: float | None = None
    batch_s: float | None = None
    instrumentation_pct: float | None = None
    consumer_cpu_s: float | None = None
    collector_cpu_s: float | None = None
    collector_pct: float | None = None
    dashboard: bool = False


class ScenarioResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    events: int
    committed: int | None
    applied: int
    duplicates: int = 0
    dead_lettered: int = 0  # events the consumer dead-lettered during the run
    unmatched_sends: int = 0
    throughput_eps: float  # row changes applied per second (metrics.stats.throughput_per_s)
    business_events_per_s: float | None = None  # the same span, business events (None: older)
    success_rate: float | None
    duration_s: float = 0.0
    rate: float | None = None
    seed: int | None = None
    warmup_events: int = 0
    e2e_ms: LatencySummary
    stages_ms: dict[str, LatencySummary]
    by_table_op: dict[str, LatencySummary] = Field(default_factory=dict)
    by_kind: dict[str, LatencySummary] = Field(default_factory=dict)
    schedule_lag_ms: LatencySummary = Field(default_factory=LatencySummary)
    commit_ms: LatencySummary = Field(default_factory=LatencySummary)
    # T5 - intended send time (coordinated-omission-free; metrics.stats.RunStats).
    e2e_from_intended_ms: LatencySummary = Field(default_factory=LatencySummary)
    slo: dict[str, SloEntry] = Field(default_factory=dict)
    baseline: dict[str, SloEntry] = Field(default_factory=dict)
    harness_cost: HarnessCost | None = None
    # CPU per process group over the load window (metrics.cost.Cost.to_json).
    cost: dict[str, Any] | None = None
    # Was the load offered as planned, was the host saturated (metrics.validity).
    validity: dict[str, Any] | None = None
    # What the verifier found when integrity failed (report.verdict.integrity_breakdown).
    integrity_breakdown: dict[str, Any] | None = None
    # Per stage, [p50 now, p50 in the baseline] (ms), when a baseline was given.
    stage_p50_vs_baseline_ms: dict[str, list[float]] | None = None
    passed: bool


class Configuration(BaseModel):
    """What produced the figures; extra keys are kept, so callers can add their own."""

    model_config = ConfigDict(extra="allow")

    versions: dict[str, str] = Field(default_factory=dict)
    knobs: dict[str, str | int | float | bool] = Field(default_factory=dict)
    host_cpus: int | None = None
    cpu_model: str = ""  # /proc/cpuinfo's model name: cores differ by up to 2x
    memory_gib: float | None = None
    python: str = ""
    platform: str = ""
    command: str = ""  # the command line that produced the run
    endpoints: dict[str, str] = Field(default_factory=dict)  # never with credentials

    def machine(self) -> str:
        """ "2 CPUs (AMD EPYC), 23.5 GiB": what a figure came from."""
        text = f"{self.host_cpus or '?'} CPUs"
        if self.cpu_model:
            text += f" ({self.cpu_model})"
        if self.memory_gib:
            text += f", {self.memory_gib:g} GiB"
        return text


class SweepPoint(BaseModel):
    """One run of a sweep: the setting it ran with and what it measured."""

    model_config = ConfigDict(extra="forbid")

    setting: dict[str, int]
    label: str
    run: int = 1  # 1..repeat
    scenario: str  # the run's entry in ``scenarios``
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_eps: float  # row changes applied per second
    success_rate: float | None
    delivered: bool
    integrity_ok: bool
    slo_passed: bool
    harness_cost_pct: float | None = None


class SweepSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str
    events: int
    rate: float
    repeat: int
    mode: str = "cartesian product"
    knobs: dict[str, list[int]]
    original: dict[str, int]  # the knobs' values before the sweep (restored after it)
    points: list[SweepPoint] = Field(default_factory=list)
    interrupted: str | None = None  # why the sweep stopped early, if it did


class CapacityStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: float  # offered business events/s
    row_rate: float  # offered row changes/s
    events: int
    scenario: str
    p50_ms: float
    p95_ms: float
    p99_ms: float
    applied_rate: float
    applied_row_rate: float
    sent_rate: float
    backlog_mid: float
    backlog_end: float
    backlog_growth: float
    schedule_lag_p99_ms: float
    delivered: bool
    integrity_ok: bool
    good: bool
    reasons: list[str] = Field(default_factory=list)
    backlog_curve: list[tuple[float, float]] = Field(default_factory=list)


class CapacitySection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capacity_rate: float  # highest good offered rate, business events/s (0: none)
    capacity_row_rate: float
    first_bad_rate: float | None
    limited_by: str
    p99_slo_ms: float
    duration_s: float
    start: float
    maximum: float
    criteria: dict[str, float]
    steps: list[CapacityStep] = Field(default_factory=list)
    interrupted: str | None = None


class RaceSpread(BaseModel):
    """One figure over a race's repeats: median, min and max."""

    model_config = ConfigDict(extra="forbid")

    median: float
    min: float
    max: float
    n: int


class RaceIntegrity(BaseModel):
    """A sink's database against PostgreSQL's rows of what it was given (count, content)."""

    model_config = ConfigDict(extra="forbid")

    expected: int  # rows in PostgreSQL the sink was given
    documents: int  # documents in its database
    missing: int = 0
    extra: int = 0  # documents of no row (or a row's second document)
    mismatched: int = 0  # documents whose payload differs from the row's

    @property
    def exact(self) -> bool:
        return self.missing == self.extra == self.mismatched == 0 and (
            self.documents == self.expected
        )


class RaceSide(BaseModel):
    """One sink in one leg of a race: commit (Debezium ``source.ts_us``) to visible."""

    model_config = ConfigDict(extra="forbid")

    label: str
    database: str
    visible: int  # rows whose document became visible within the timeout
    latency_ms: LatencySummary
    throughput_eps: float  # visible rows / (last visible - first commit)
    duration_s: float = 0.0
    # Backlog legs: rows made visible after the watcher first saw one, per second to the
    # last one (the sink's start-up is left out).
    drain_rows_per_s: float | None = None
    # CPU seconds of the sink's process per 1,000 rows (None: not attributable, e.g. a
    # Connect worker running several sinks, or a user's Connect cluster).
    cpu_s_per_1000_rows: float | None = None
    integrity: RaceIntegrity | None = None


class RaceLeg(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str  # "rate" (alone at the offered rate), "drain" (alone, backlog), "together"
    repeat: int
    events: int
    sides: dict[str, RaceSide]


class RaceSinkSummary(BaseModel):
    """One sink over every leg of a race."""

    model_config = ConfigDict(extra="forbid")

    label: str
    database: str
    process: str  # what its CPU figure is the CPU of
    why: str  # what was chosen for its configuration, and why
    config: dict[str, str] = Field(default_factory=dict)  # without connection strings
    drain_rows_per_s: RaceSpread | None = None
    p50_ms: RaceSpread | None = None
    p95_ms: RaceSpread | None = None
    p99_ms: RaceSpread | None = None
    cpu_s_per_1000_rows: RaceSpread | None = None  # from its backlog legs
    complete: bool = True  # every row visible in every leg
    integrity_problems: list[str] = Field(default_factory=list)  # empty: exact every leg


class RaceResult(BaseModel):
    """The same workload through our consumer and each peer sink, timed alike."""

    model_config = ConfigDict(extra="forbid")

    events: int  # rows inserted per leg at the rate (one transaction each)
    rate: float
    repeats: int = 1
    backlog_rows: int = 0  # rows of the backlog each sink drained
    timeout_s: float
    table: str
    backlog_table: str = ""
    topic: str
    probe: str  # how visibility was observed
    poll_interval_ms: float
    sinks: dict[str, RaceSinkSummary] = Field(default_factory=dict)
    legs: list[RaceLeg] = Field(default_factory=list)
    # peer -> figure -> ours / peer over the repeats, paired repeat by repeat:
    # "throughput" (backlog drain rate: above 1 ours is faster), "p50"/"p95"/"p99"
    # (alone at the rate: below 1 ours is faster), "cpu" (per row: below 1 ours is cheaper)
    ratios: dict[str, dict[str, RaceSpread | None]] = Field(default_factory=dict)
    targets: dict[str, dict[str, bool | None]] = Field(default_factory=dict)
    schedule_lag_ms: LatencySummary = Field(default_factory=LatencySummary)
    notes: list[str] = Field(default_factory=list)
    passed: bool  # ours: every row visible and exact in every leg


class ResultDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    generated_at: str  # ISO 8601, UTC
    commit: str | None = None
    configuration: Configuration
    scenarios: list[ScenarioResult] = Field(default_factory=list)
    sweep: SweepSection | None = None
    capacity: CapacitySection | None = None
    race: RaceResult | None = None

    @property
    def passed(self) -> bool:
        race_ok = self.race is None or self.race.passed
        return all(s.passed for s in self.scenarios) and race_ok

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
    return rev_parse("HEAD", cwd)


def rev_parse(ref: str, cwd: Path | None = None) -> str | None:
    """The commit a git ref names in ``cwd``'s repository (None: not a ref, no git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def base_configuration(
    versions: Mapping[str, str] | None = None,
    knobs: Mapping[str, str | int | float | bool] | None = None,
    **extra: Any,
) -> Configuration:
    """Host facts (CPUs, Python, platform) plus the caller's versions and knobs."""
    import shlex
    import sys

    import psutil

    from event_processor import __version__

    return Configuration(
        versions={"event_processor": __version__, **(versions or {})},
        knobs=dict(knobs or {}),
        host_cpus=os.cpu_count(),
        cpu_model=cpu_model(),
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        command=shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **extra,
    )


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


_SETTINGS_VERSIONS = ("kafka_version", "debezium_version", "ferretdb_version")


def configuration_from_settings(
    settings: Settings,
    versions: Mapping[str, str] | None = None,
    knobs: Mapping[str, str | int | float | bool] | None = None,
    **extra: Any,
) -> Configuration:
    """Configuration with the settings' versions and the given knobs.

    Knobs are what the caller read from the running components (perf.harness
    running_knobs), never the harness's own settings: a consumer or connector started
    with other values would otherwise be misreported. Endpoints are recorded only as
    local or external: DSNs and URIs may hold secrets.
    """
    own_versions = {
        k.removesuffix("_version"): str(getattr(settings, k)) for k in _SETTINGS_VERSIONS
    }
    endpoints = {
        "postgres": "external" if settings.pg_external else "local",
        "kafka": "external" if settings.kafka_external else "local",
        "connect": "external" if settings.connect_external else "local",
        "mongodb": "external" if settings.mongo_external else "local",
    }
    return base_configuration(
        versions={**own_versions, **(versions or {})},
        knobs=dict(knobs or {}),
        endpoints=endpoints,
        **extra,
    )


def build_document(
    scenarios: Iterable[ScenarioResult],
    configuration: Configuration,
    *,
    commit: str | None = None,
    generated_at: datetime | None = None,
    race: RaceResult | None = None,
) -> ResultDocument:
    when = (generated_at or datetime.now(UTC)).astimezone(UTC)
    return ResultDocument(
        generated_at=when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        commit=commit,
        configuration=configuration,
        scenarios=list(scenarios),
        race=race,
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
