"""Run one load scenario end to end and gate it: the library call behind `load` and pytest.

A run is four pieces, each usable alone (the pytest plugin makes fixtures of them) and
composed by ``run_scenario``:

1. ``clean_slate``: the source tables truncated, the read model (and the consumer's
   source positions) emptied, nothing of earlier runs still in flight, both local
   PostgreSQL clusters checkpointed;
2. ``scenario_consumer``: a fresh consumer process joins a new group whose offsets start
   at the current end of every change topic; once it is assigned all of them the
   product catalogue is seeded and awaited in MongoDB (excluded from every figure);
   the process is stopped when the block ends;
3. ``timing_capture``: the timing collector and the dead-letter reader, positioned where
   the run's records begin;
4. ``measure``: load -> collect -> result. The open-loop generator sends the scenario's
   plan at its rate (a live dashboard, when the caller's ``RunView`` asks for one, fed
   from the generator's SendRecords and the collected TimingRecords); the harness
   waits until every committed row change has a timing record (at most
   ``delivery_timeout_s`` after the last send), leaves out the warm-up events,
   computes exact figures and gates them, then runs the integrity verifier, whose
   verdict is the integrity gate (100 % only when it found nothing); the events the
   consumer dead-lettered during the run are counted from the dead-letter topic.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from event_processor.consumer.dlq import DeadLetterReader
from event_processor.consumer.timings import TimingCollector
from event_processor.errors import ConfigError, EventProcessorError, StackError
from event_processor.metrics.cost import CostMeter
from event_processor.metrics.scenarios import Scenario
from event_processor.metrics.slo import GateResult, compare_to_baseline, evaluate
from event_processor.metrics.stats import RunStats, summarize_run
from event_processor.metrics.timing import NegativeStageError, SendRecord, TimingRecord
from event_processor.metrics.validity import judge
from event_processor.perf.running_config import running_knobs
from event_processor.report.schema import (
    Configuration,
    HarnessCost,
    ScenarioResult,
    configuration_from_settings,
    scenario_result,
)
from event_processor.report.verdict import integrity_breakdown, stage_p50_pairs
from event_processor.settings import Settings
from event_processor.testing import (
    ConsumerProcess,
    active_members,
    assigned_topics,
    change_topics,
    commit_at_end,
    end_offsets,
    free_port,
    new_group,
    wait_until,
)
from event_processor.verify.baseline import reset_read_model

if TYPE_CHECKING:
    from rich.console import Console

    from event_processor.metrics.live import LiveMetrics

ProgressFn = Callable[[str], None]

# Read-model collections a run empties (the consumer's positions included).
READ_MODEL_COLLECTIONS = ("customers", "products", "orders")
ASSIGN_TIMEOUT_S = 60.0
CATALOGUE_TIMEOUT_S = 60.0
QUIET_TIMEOUT_S = 30.0
QUIET_S = 1.0
MIN_VERIFY_TIMEOUT_S = 60.0


class HarnessError(EventProcessorError):
    """The run could not be carried out (not: a gate failed)."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__("load", problem, fix)


@dataclass(slots=True)
class VerifyOutcome:
    """The integrity verifier's verdict (or why it could not give one)."""

    ok: bool
    lines: list[str]
    data: dict[str, Any] | None = None
    error: str | None = None

    @property
    def integrity_pct(self) -> float:
        """100 only when the verifier passed; below 100 otherwise."""
        if self.ok:
            return 100.0
        if self.data:
            rows = int(self.data.get("rows") or 0)
            problems = int(self.data.get("total_findings") or 0)
            if rows > 0 and problems > 0:
                pct = max(0.0, (rows - problems) * 100.0 / rows)
                return min(pct, math.nextafter(100.0, 0.0))
        return 0.0


@dataclass(slots=True)
class ScenarioOutcome:
    """Everything one scenario run produced: figures, gates, verdicts, plots, config."""

    scenario: Scenario
    stats: RunStats
    gates: list[GateResult]
    baseline_gates: list[GateResult]
    result: ScenarioResult
    verify: VerifyOutcome
    configuration: Configuration
    plots: dict[str, bytes] = field(default_factory=dict)
    delivered: bool = True  # every committed row change got a timing record in time
    group: str = ""
    consumer_log: str = ""
    # The run's raw records, warm-up included, for analyses beyond the summary figures
    # (the capacity search's backlog curve).
    sends: list[SendRecord] = field(default_factory=list, repr=False)
    timings: list[TimingRecord] = field(default_factory=list, repr=False)

    @property
    def passed(self) -> bool:
        return self.result.passed and self.verify.ok and self.delivered

    def failures(self) -> list[str]:
        """One message per failed check, in the gates' words."""
        msgs = [g.message for g in (*self.gates, *self.baseline_gates) if not g.passed]
        validity = self.result.validity
        if validity and not validity.get("valid", True):
            msgs.insert(0, f"{self.scenario.name}: INVALID: load not offered as planned ("
                        + "; ".join(validity.get("reasons", [])) + ")")  # fmt: skip
        if not self.delivered:
            msgs.append(
                f"{self.scenario.name}: only {self.stats.applied} of {self.stats.committed} "
                f"row changes were applied within {self.scenario.delivery_timeout_s:g} s"
            )
        if not self.verify.ok:
            first = self.verify.error or "; ".join(self.verify.lines[:3])
            msgs.append(f"{self.scenario.name}: integrity verifier FAILED: {first}")
        return msgs

    def fragment(self) -> str:
        from event_processor.report.html import scenario_fragment

        return scenario_fragment(self.result, self.plots, self.configuration)


# --- pure assembly (unit-tested) ----------------------------------------------------------


def assemble(
    scenario: Scenario,
    stats: RunStats,
    integrity_pct: float | None,
    *,
    baseline: Mapping[str, Any] | None = None,
    tolerances: Mapping[str, float] | None = None,
    dead_lettered: int = 0,
) -> tuple[list[GateResult], list[GateResult], ScenarioResult]:
    """Gates, baseline checks and the report entry of one run.

    A baseline without this scenario is no comparison (nothing to regress from); a
    baseline entry with a missing metric fails that metric's check.
    """
    gates = evaluate(stats, scenario.slos, scenario=scenario.name, integrity_pct=integrity_pct)
    baseline_gates: list[GateResult] = []
    if baseline is not None and tolerances:
        baseline_gates = compare_to_baseline(
            stats.to_dict(), baseline, tolerances, scenario=scenario.name
        )
    result = scenario_result(
        scenario.name,
        stats,
        gates,
        baseline_gates=baseline_gates,
        rate=scenario.rate,
        seed=scenario.seed,
        warmup_events=scenario.warmup_events,
        dead_lettered=dead_lettered,
    )
    return gates, baseline_gates, result


def delivered_rows(timings: list[TimingRecord], tx_ids: set[int]) -> int:
    """Distinct row changes of the run's transactions that reached MongoDB."""
    return len({t.correlation_id for t in timings if t.tx_id in tx_ids})


def harness_cost(
    metrics: Mapping[str, float],
    consumer_cpu_s: float | None,
    collector_cpu_s: float | None,
    *,
    dashboard: bool = False,
) -> HarnessCost:
    """The harness's own cost from the consumer's counters and the two CPU times."""
    instrumentation = metrics.get("ep_instrumentation_seconds_total")
    batch = metrics.get("ep_batch_processing_seconds_total")
    pct = None
    if instrumentation is not None and batch:
        pct = round(instrumentation * 100.0 / batch, 3)
    collector_pct = None
    if collector_cpu_s is not None and consumer_cpu_s:
        collector_pct = round(collector_cpu_s * 100.0 / consumer_cpu_s, 3)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 6)

    return HarnessCost(
        instrumentation_s=r(instrumentation),
        batch_s=r(batch),
        instrumentation_pct=pct,
        consumer_cpu_s=r(consumer_cpu_s),
        collector_cpu_s=r(collector_cpu_s),
        collector_pct=collector_pct,
        dashboard=dashboard,
    )


def expected_topics(settings: Settings) -> list[str]:
    """The change topics a workload writes to (Debezium creates them on first use)."""
    from event_processor.stack.connect import AGGREGATE_TABLES

    prefix = settings.topic_prefix
    return [
        f"{prefix}.public.customers",
        f"{prefix}.public.products",
        f"{prefix}.aggregate.{AGGREGATE_TABLES[0]}",
    ]


# --- the run ------------------------------------------------------------------------------


def check_stack(settings: Settings) -> None:
    """A one-line StackError naming what is down, unless every service is healthy."""
    from event_processor.stack import manager

    try:
        status = manager.status(settings)
    except Exception as exc:  # a status probe must not crash with a traceback
        raise StackError("load", f"cannot check the stack: {exc}",
                         "run `event-processor stack up`") from None  # fmt: skip
    if not status.get("ok"):
        down = [n for n in ("postgres", "kafka", "connect", "mongo") if not status[n]["ok"]]
        raise StackError(
            "load",
            f"the stack is not up ({', '.join(down)} not healthy)",
            "run `event-processor stack up` (or check the EP_* endpoints)",
        )


def _reset_source(settings: Settings) -> None:
    import psycopg2

    from event_processor.source.schema import apply_schema, truncate_all

    conn = psycopg2.connect(settings.postgres_dsn(), application_name="ep-perf-reset")
    try:
        apply_schema(conn)
        truncate_all(conn)
    finally:
        conn.close()


def _checkpoint(settings: Settings) -> None:
    """CHECKPOINT the local PostgreSQL clusters before a measured run, as database
    benchmarks do: the suites before it leave megabytes of dirty pages, and a
    checkpoint that starts inside a 2-second scenario shows as a slower sink. Skipped
    for clusters we do not run (it needs superuser rights)."""
    import psycopg2

    from event_processor.stack import ferretdb

    dsns = [] if settings.pg_external else [settings.postgres_dsn()]
    if not settings.mongo_external:
        dsns.append(ferretdb.store_dsn(settings))
    for dsn in dsns:
        try:
            conn = psycopg2.connect(dsn, application_name="ep-perf-checkpoint")
        except psycopg2.Error:
            continue
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CHECKPOINT")
        except psycopg2.Error:
            pass
        finally:
            conn.close()


def _wait_kafka_quiet(settings: Settings) -> None:
    """Until no change topic grew for QUIET_S: nothing of earlier runs is in flight."""
    deadline = time.monotonic() + QUIET_TIMEOUT_S
    topics = change_topics(settings)
    last = end_offsets(settings, topics)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = end_offsets(settings, topics)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S:
            return
    raise HarnessError(
        f"change topics kept growing for {QUIET_TIMEOUT_S:g} s before the run",
        "stop whatever is writing to the source database",
    )


def _empty_read_model(settings: Settings) -> None:
    from pymongo import MongoClient
    from pymongo.errors import CollectionInvalid

    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongodb_uri(), serverSelectionTimeoutMS=10_000, socketTimeoutMS=120_000
    )
    try:
        db = client[settings.mongo_database]
        existing = set(db.list_collection_names())
        for name in READ_MODEL_COLLECTIONS:
            if name in existing:
                db[name].delete_many({})
            else:
                # Created here, one at a time, before the consumer starts: FerretDB can
                # fail concurrent first-time creations of a database's collections.
                with contextlib.suppress(CollectionInvalid):
                    db.create_collection(name)
    finally:
        client.close()


def ensure_topics(settings: Settings, topics: list[str] | None = None) -> None:
    """Create missing change topics (default: the workload's) as Debezium would, so the
    consumer is assigned them before the run instead of discovering them (seconds late)
    in the middle of it."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = expected_topics(settings) if topics is None else topics
    missing = [t for t in wanted if t not in change_topics(settings)]
    if not missing:
        return
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        config = {"message.timestamp.type": "LogAppendTime"}
        for topic in missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(topic, settings.topic_partitions, 1,
                                              topic_configs=config)])  # fmt: skip
    finally:
        admin.close()


def _start_consumer(settings: Settings, group: str, scenario: str) -> ConsumerProcess:
    ensure_topics(settings)
    topics = change_topics(settings)
    commit_at_end(settings, group, topics)
    log = settings.state_dir / "logs" / "perf-consumer.log"
    # Its Prometheus endpoint (on a free port) tells the harness's cost at the end.
    proc = ConsumerProcess(f"perf-{scenario}", log, group=group, metrics_port=free_port())
    wanted = set(topics)

    def assigned() -> bool:
        if not proc.alive():
            raise HarnessError(
                f"the consumer exited during start-up: {proc.last_lines()}", f"read {log}"
            )
        return wanted <= assigned_topics(settings, group)

    try:
        if not wait_until(assigned, ASSIGN_TIMEOUT_S, 0.25):
            raise HarnessError(
                f"the consumer was not assigned {sorted(wanted)} within {ASSIGN_TIMEOUT_S:g} s",
                f"read {log}",
            )
    except BaseException:
        proc.stop()
        raise
    return proc


def _seed(settings: Settings, model: Any, consumer: ConsumerProcess) -> None:
    from pymongo import MongoClient

    from event_processor.source.generator import seed_catalogue

    n = seed_catalogue(settings.postgres_dsn(), model)
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongodb_uri(), serverSelectionTimeoutMS=10_000
    )
    try:
        products = client[settings.mongo_database]["products"]

        def applied() -> bool:
            if not consumer.alive():
                raise HarnessError(
                    f"the consumer exited: {consumer.last_lines(3)}", f"read {consumer.log_path}"
                )
            return products.count_documents({}) >= n

        if not wait_until(applied, CATALOGUE_TIMEOUT_S, 0.1):
            raise HarnessError(
                f"the catalogue ({n} products) did not reach MongoDB within "
                f"{CATALOGUE_TIMEOUT_S:g} s",
                "check `event-processor stack status` and the consumer log",
            )
    finally:
        client.close()


class _CollectorThread(threading.Thread):
    """Polls the timing topic from the run's start; feeds the live view as it goes."""

    def __init__(self, collector: TimingCollector, metrics: LiveMetrics | None) -> None:
        super().__init__(name="ep-perf-collector", daemon=True)
        self.collector = collector
        self.metrics = metrics
        self._records: list[TimingRecord] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.error: BaseException | None = None
        self.cpu_s = 0.0  # CPU this thread used (the cost of collecting)

    def run(self) -> None:
        started = time.thread_time()
        try:
            while not self._halt.is_set():
                batch = list(self.collector.poll(100))
                if not batch:
                    continue
                with self._lock:
                    self._records.extend(batch)
                if self.metrics is not None:
                    self.metrics.record_many(batch)
        except BaseException as exc:  # re-raised on the harness thread
            self.error = exc
        finally:
            self.cpu_s = time.thread_time() - started

    def records(self) -> list[TimingRecord]:
        if self.error is not None:
            raise HarnessError(f"collecting timing records failed: {self.error}")
        with self._lock:
            return list(self._records)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def _wait_delivered(
    thread: _CollectorThread, sends: list[SendRecord], timeout_s: float
) -> tuple[list[TimingRecord], bool]:
    tx_ids = {s.tx_id for s in sends}
    want = sum(s.rows for s in sends)
    seen: set[str] = set()
    scanned = 0
    deadline = time.monotonic() + timeout_s
    while True:
        records = thread.records()
        for rec in records[scanned:]:
            if rec.tx_id in tx_ids:
                seen.add(rec.correlation_id)
        scanned = len(records)
        if len(seen) >= want:
            return [r for r in records if r.tx_id in tx_ids], True
        if time.monotonic() >= deadline:
            return [r for r in records if r.tx_id in tx_ids], False
        time.sleep(0.05)


def _run_verify(
    settings: Settings, timeout_s: float, json_path: Path | None, group: str
) -> VerifyOutcome:
    try:
        from event_processor.verify import run_verify
    except ImportError as exc:
        return VerifyOutcome(False, [], error=f"the verifier is not available: {exc}")
    try:
        try:
            report = run_verify(settings, timeout_s, json_path, group=group)
        except TypeError:  # an older signature without ``group``
            report = run_verify(settings, timeout_s, json_path)
    except EventProcessorError as exc:
        return VerifyOutcome(False, [exc.one_line()], error=exc.one_line())
    return VerifyOutcome(bool(report.ok), list(report.summary_lines()), report.to_dict())


def run_configuration(
    settings: Settings, scenario: Scenario, consumer_reported: Mapping[str, str] | None = None
) -> Configuration:
    """Versions, knobs read from the running components, and host facts (no credentials).

    ``consumer_reported``: what the run's consumer said it runs with (its metrics
    endpoint), read before it was stopped."""
    import importlib.metadata as md

    from event_processor.source.generator import connections_for

    versions: dict[str, str] = {}
    for dist in ("kafka-python", "pymongo", "psycopg2-binary", "psycopg2"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    try:
        import psycopg2

        conn = psycopg2.connect(settings.postgres_dsn(), application_name="ep-perf-config")
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                row = cur.fetchone()
                if row:
                    versions["postgres"] = str(row[0])
        finally:
            conn.close()
    except Exception:  # the version is a nice-to-have, not a reason to fail a run
        pass
    knobs: dict[str, str | int | float | bool] = {
        "generator_connections": connections_for(scenario.rate),
        "generator_rate": scenario.rate,
        **running_knobs(settings, consumer_reported or {}),
    }
    return configuration_from_settings(
        settings,
        versions=versions,
        knobs=knobs,
        seed=scenario.seed,
        scenario=scenario.name,
    )


def _quiet(_msg: str) -> None:
    pass


@dataclass(slots=True)
class RunView:
    """How a run shows itself, chosen by the caller (the CLI); tests, the warm-up and
    the searches pass none: no dashboard, no progress, no messages."""

    dashboard: bool = False
    console: Console | None = None
    progress: bool = False  # a progress bar while sending (without the dashboard)
    dashboard_svg: Path | None = None  # the dashboard's last frame, saved as SVG
    say: ProgressFn = _quiet


@dataclass(slots=True)
class PreparedScenario:
    """A scenario and its plan, decided before the run like every intended send time."""

    scenario: Scenario
    model: Any  # source.workload.WorkloadModel (its catalogue is seeded before the load)
    plan: list[Any]


def prepare(scenario: Scenario) -> PreparedScenario:
    from event_processor.source.workload import WorkloadModel

    model = WorkloadModel(seed=scenario.seed)
    return PreparedScenario(scenario, model, model.plan(scenario.events))


def clean_slate(settings: Settings, say: ProgressFn = _quiet) -> None:
    """Empty source and read model, nothing of earlier runs in flight, clusters
    checkpointed: every scenario starts from the same state."""
    say("reset: emptying source and read model")
    others = active_members(settings, settings.consumer_group)
    if others:
        say(f"warning: {others} consumer(s) in group {settings.consumer_group} also write "
            "the read model during this run")  # fmt: skip
    _reset_source(settings)
    _wait_kafka_quiet(settings)
    # Positions at the end of every change partition: no consumer, even one replaying
    # from the beginning, can resurrect rows of earlier runs into the emptied model.
    reset_read_model(settings)
    _empty_read_model(settings)
    _checkpoint(settings)


@contextlib.contextmanager
def scenario_consumer(
    settings: Settings, prepared: PreparedScenario, say: ProgressFn = _quiet
) -> Iterator[ConsumerProcess]:
    """A consumer in a new group, assigned every change topic, with the scenario's
    catalogue applied; stopped when the block ends."""
    name = prepared.scenario.name
    group = new_group(name)
    say(f"starting a consumer in group {group}")
    consumer = _start_consumer(settings, group, name)
    try:
        say(f"warm-up: seeding the catalogue ({len(prepared.model.catalogue)} products)")
        _seed(settings, prepared.model, consumer)
        yield consumer
    finally:
        consumer.stop()


@dataclass(slots=True)
class TimingCapture:
    """Where a run's timing records and dead letters are read from (its start on)."""

    collector: TimingCollector
    dead_letters: DeadLetterReader


@contextlib.contextmanager
def timing_capture(settings: Settings) -> Iterator[TimingCapture]:
    """The timing collector and dead-letter reader, from the end of their topics now."""
    collector = TimingCollector(settings.kafka_servers(), settings.timings_topic)
    try:
        collector.seek(collector.mark_end())
        dead_letters = DeadLetterReader(settings.kafka_servers(), settings.dlq_topic)
        try:
            yield TimingCapture(collector, dead_letters)
        finally:
            dead_letters.close()
    finally:
        collector.close()


def run_scenario(
    settings: Settings,
    scenario: Scenario,
    *,
    view: RunView | None = None,
    baseline: Mapping[str, Any] | None = None,
    tolerances: Mapping[str, float] | None = None,
    verify_json: Path | None = None,
    plots: bool = True,
    check: bool = True,
) -> ScenarioOutcome:
    """Run ``scenario`` from a clean state and gate it (see the module docstring).

    Raises HarnessError / StackError when the run itself could not be carried out; a
    failed gate is not an exception but ``outcome.passed is False``.
    """
    view = view or RunView()
    if check:
        check_stack(settings)
    prepared = prepare(scenario)
    clean_slate(settings, view.say)
    with (
        scenario_consumer(settings, prepared, view.say) as consumer,
        timing_capture(settings) as capture,
    ):
        return measure(
            settings,
            prepared,
            consumer,
            capture,
            view=view,
            baseline=baseline,
            tolerances=tolerances,
            verify_json=verify_json,
            plots=plots,
        )


def measure(
    settings: Settings,
    prepared: PreparedScenario,
    consumer: ConsumerProcess,
    capture: TimingCapture,
    *,
    view: RunView | None = None,
    baseline: Mapping[str, Any] | None = None,
    tolerances: Mapping[str, float] | None = None,
    verify_json: Path | None = None,
    plots: bool = True,
) -> ScenarioOutcome:
    """Load -> collect -> result: send the plan against a clean slate whose consumer
    runs (``scenario_consumer``) and whose records are captured (``timing_capture``)."""
    from event_processor.source.generator import run_load

    view = view or RunView()
    scenario = prepared.scenario
    metrics = _live_metrics(scenario) if view.dashboard else None
    thread = _CollectorThread(capture.collector, metrics)
    cpu_before = consumer.cpu_seconds()  # the run's share, not start-up and seeding
    meter = CostMeter(
        None if settings.pg_external else settings.state_dir,
        processes={"consumer": consumer.pid, "harness (main, dashboard)": os.getpid()},
        threads={"ep-generator": "generator", "ep-perf-collector": "collector"},
    )
    meter.start()
    thread.start()
    view.say(f"load: {scenario.events} events at {scenario.rate:g}/s (seed {scenario.seed})")
    try:
        sends, timings, delivered = _drive(
            settings, scenario, prepared.plan, metrics, thread, view, run_load
        )
    finally:
        thread.stop()
    run_cost = meter.stop()
    if metrics is not None and view.dashboard_svg is not None:
        # The last frame of the live dashboard, as the run ended (README capture); drawn
        # after the cost window closed, so its rendering is not charged to the run.
        from event_processor.dashboard.live import DashboardRunner

        DashboardRunner(metrics).export_svg(view.dashboard_svg, title=scenario.name)
    cpu_after = consumer.cpu_seconds()
    cost = harness_cost(
        consumer.metrics(),
        None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        thread.cpu_s,
        dashboard=view.dashboard,
    )

    try:
        stats = summarize_run(timings, sends, None, warmup_events=scenario.warmup_events)
    except NegativeStageError as exc:
        raise HarnessError(f"broken run: {exc}", "check the host clock") from None

    view.say("verify: comparing PostgreSQL with the read model")
    verify_timeout = max(MIN_VERIFY_TIMEOUT_S, scenario.delivery_timeout_s)
    group = consumer.group or ""
    verify = _run_verify(settings, verify_timeout, verify_json, group)
    # Dead letters are flushed before a batch's timing records are published.
    dead_lettered = len(capture.dead_letters.until_end(consumer_id=consumer.name))
    consumer_reported = consumer.effective_settings()

    gates, baseline_gates, result = assemble(
        scenario,
        stats,
        verify.integrity_pct,
        baseline=baseline,
        tolerances=tolerances,
        dead_lettered=dead_lettered,
    )
    result.harness_cost = cost
    result.cost = run_cost.to_json(stats.committed or stats.applied)
    if not verify.ok:
        result.integrity_breakdown = integrity_breakdown(verify.data)
    stages = {name: summary.to_dict() for name, summary in stats.stages.items()}
    result.stage_p50_vs_baseline_ms = stage_p50_pairs(stages, baseline)
    validity = judge(
        scenario.rate,
        [x.sent_us for x in sends],
        [x.intended_us for x in sends],
        stats.schedule_lag.p99,
        run_cost.host_busy if run_cost.groups else None,
    )
    result.validity = validity.to_json()
    if not validity.valid:
        result.passed = False
    figures = _plots(stats, scenario) if plots else {}
    return ScenarioOutcome(
        scenario=scenario,
        stats=stats,
        gates=gates,
        baseline_gates=baseline_gates,
        result=result,
        verify=verify,
        configuration=run_configuration(settings, scenario, consumer_reported),
        plots=figures,
        delivered=delivered,
        group=group,
        consumer_log=str(consumer.log_path),
        sends=sends,
        timings=timings,
    )


# The unmeasured run before the first gated scenario (see warm_up_pipeline).
PIPELINE_WARMUP_EVENTS = 30_000  # 60 s at the stress rate, as OMB's default warm-up
PIPELINE_WARMUP_RATE = 500.0
# Then more rounds while the JVMs' JIT compilers still take a large share of their CPU.
JIT_ROUND_EVENTS = 10_000  # 20 s at the stress rate
JIT_MAX_ROUNDS = 6
JIT_SETTLED_SHARE = 0.10  # compiler threads' share of the JVMs' CPU in a round


# What a caller says when the warm-up did not deliver (it must not pass silently).
WARM_UP_FAILED = (
    "pipeline warm-up: not every row change of the unmeasured warm-up reached MongoDB in "
    "time, so gated figures would measure a pipeline that does not deliver (fix: check "
    "`event-processor stack status` and the consumer log, .stack/logs/perf-consumer.log)"
)


def warm_up_pipeline(settings: Settings, on_progress: ProgressFn | None = None) -> bool:
    """Run load the figures never see, so gated scenarios measure a warm pipeline.

    Debezium, Connect and Kafka run in JVMs that compile their hot paths only under
    load. Measured right after the fault suite had restarted both JVMs, the 1,000-event
    scenario's Kafka stage had a p50 of 32.6 ms (e2e p50 62.3 ms); the same scenario a
    minute later, warm, 7.8 ms (e2e 18.2 ms). Neither 3,000 nor 10,000 events were
    enough right after a `stack up` (stress e2e p50 66.6 and 32.7 ms, every stage slow,
    against 17-20 ms on a stack up for half an hour): one minute at the stress rate,
    the OpenMessaging Benchmark's default warm-up. Even after it, Connect's compiler
    threads were measured at 57 % of its CPU in the next run (Connect's cost 0.37 ms
    per row change against 0.22 warm): so while the local JVMs' compiler threads take
    more than ``JIT_SETTLED_SHARE`` of their CPU, another round follows, up to
    ``JIT_MAX_ROUNDS``. Returns whether every round delivered.
    """
    say = on_progress or (lambda _msg: None)
    say(f"pipeline warm-up: {PIPELINE_WARMUP_EVENTS} events at {PIPELINE_WARMUP_RATE:g}/s, "
        "not measured (JIT-compiles the JVMs' hot paths)")  # fmt: skip
    delivered, share = _warm_up_round(settings, PIPELINE_WARMUP_EVENTS)
    for round_no in range(1, JIT_MAX_ROUNDS + 1):
        if share is None:  # no JVM of ours runs here (an external stack)
            break
        if share <= JIT_SETTLED_SHARE:
            say(f"pipeline warm-up: JVMs warm (JIT compilers {100 * share:.0f} % of their "
                f"CPU, at most {100 * JIT_SETTLED_SHARE:.0f} %)")  # fmt: skip
            break
        say(f"pipeline warm-up: JIT compilers still {100 * share:.0f} % of the JVMs' CPU; "
            f"round {round_no} of {JIT_MAX_ROUNDS} at most: {JIT_ROUND_EVENTS} events")  # fmt: skip
        ok, share = _warm_up_round(settings, JIT_ROUND_EVENTS)
        delivered = delivered and ok
    else:
        if share is not None and share > JIT_SETTLED_SHARE:
            say(f"pipeline warm-up: JIT compilers still {100 * share:.0f} % of the JVMs' CPU "
                f"after {JIT_MAX_ROUNDS} rounds; measuring anyway")  # fmt: skip
    return delivered


def _warm_up_round(settings: Settings, events: int) -> tuple[bool, float | None]:
    """One unmeasured run; whether it delivered, and the JIT compilers' share of the
    JVMs' CPU over its second half (None when no JVM of ours runs here)."""
    from event_processor.metrics.cost import jit_reading

    scenario = Scenario(
        name="pipeline-warmup",
        events=events,
        rate=PIPELINE_WARMUP_RATE,
        seed=1,
        delivery_timeout_s=60,
    )
    readings: list[Any] = []
    # Reset, consumer start and seeding take a few seconds before the first send.
    half = threading.Timer(
        scenario.duration_s / 2 + 5, lambda: readings.append(jit_reading(settings.state_dir))
    )
    half.start()
    outcome = run_scenario(settings, scenario, plots=False)
    half.cancel()
    end = jit_reading(settings.state_dir)
    share = end.share_since(readings[0]) if end is not None and readings and readings[0] else None
    return bool(outcome.delivered), share


def _live_metrics(scenario: Scenario) -> LiveMetrics:
    from event_processor.metrics.live import LiveMetrics

    try:
        return LiveMetrics(
            scenario=scenario.name, target_events=scenario.events, slo_targets=scenario.slos
        )
    except ConfigError:  # an SLO the live view cannot show must not stop the run
        return LiveMetrics(scenario=scenario.name, target_events=scenario.events)


def _drive(
    settings: Settings,
    scenario: Scenario,
    plan: list[Any],
    metrics: LiveMetrics | None,
    thread: _CollectorThread,
    view: RunView,
    run_load: Callable[..., list[SendRecord]],
) -> tuple[list[SendRecord], list[TimingRecord], bool]:
    """Send the plan open loop (under the dashboard) and wait for its delivery."""
    from contextlib import nullcontext

    from event_processor.dashboard.live import DashboardRunner

    on_sent = metrics.record_send if metrics is not None else None
    shown: Any = (
        DashboardRunner(metrics, console=view.console) if metrics is not None else nullcontext()
    )
    with shown:
        sends = run_load(
            settings.postgres_dsn(),
            plan,
            scenario.rate,
            on_sent=on_sent,
            progress=view.progress and metrics is None,
        )
        timings, delivered = _wait_delivered(thread, sends, scenario.delivery_timeout_s)
    return sends, timings, delivered


def _plots(stats: RunStats, scenario: Scenario) -> dict[str, bytes]:
    from event_processor.report.plots import scenario_plots

    try:
        return scenario_plots(stats, scenario.slos, scenario.name)
    except Exception:  # a figure that cannot be drawn must not hide the figures
        return {}
