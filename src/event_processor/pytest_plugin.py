"""pytest plugin: options, fixtures for the live stack and the consumer, SLO gates, reports.

Registered as a pytest11 entry point. Unit tests need none of it; tests marked
integration / integrity / stress / fault bring the stack up once per session (or use the
endpoints configured by EP_* variables) and leave it running for the next run.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from event_processor.settings import PROJECT_ROOT, Settings, get_settings
from event_processor.testing import ConsumerProcess, change_topics, commit_at_end


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
        metavar="PATH|previous|REF",
        default=None,
        help="compare with an earlier result (a result JSON, previous = the newest stored "
        "run, or a git ref: its newest stored run) and fail on regressions",
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


@pytest.fixture
def clean_pipeline(ep_stack: Settings, pg_conn: Any) -> Iterator[Settings]:
    """Empty source and read model, every service up; restores the stack afterwards."""
    from event_processor.source.schema import DOMAIN_TABLES, apply_schema, truncate_all
    from event_processor.stack import manager
    from event_processor.verify.baseline import reset_read_model

    apply_schema(pg_conn)
    truncate_all(pg_conn)
    with pg_conn.cursor() as cur:  # tables other tests created: the verifier sees them too
        cur.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
        others = [r[0] for r in cur.fetchall() if r[0] not in DOMAIN_TABLES]
        if others:
            cur.execute("TRUNCATE " + ", ".join(f'public."{t}"' for t in others))
    reset_read_model(ep_stack)
    yield ep_stack
    manager.up(ep_stack)  # a test that stopped a service leaves the stack whole again


@pytest.fixture
def start_consumer(ep_stack: Settings, tmp_path: Path) -> Iterator[Any]:
    """Factory: start consumer processes for one test; all are stopped afterwards."""
    started: list[ConsumerProcess] = []
    seen_groups: set[str] = set()

    def start(
        name: str = "c1", group: str | None = None, metrics_port: int = 0, at_end: bool = True
    ) -> ConsumerProcess:
        if group and at_end and group not in seen_groups:
            # A new group would otherwise read every change topic from the beginning
            # (skipping what the read model has, but reading it all): start at the end.
            commit_at_end(ep_stack, group, change_topics(ep_stack))
        if group:
            # A restart in the same group resumes from its committed offsets.
            seen_groups.add(group)
        proc = ConsumerProcess(
            name, tmp_path / f"consumer-{name}.log", group=group, metrics_port=metrics_port
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


# --- load scenarios under SLO gates (tests/perf) ---------------------------------------


class PerfSession:
    """The session's scenario runs: options checked up front, outcomes kept for reports."""

    def __init__(self, config: pytest.Config) -> None:
        from event_processor.metrics.scenarios import load_scenarios
        from event_processor.metrics.slo import parse_overrides
        from event_processor.perf.results import baseline_entries, tolerances
        from event_processor.report.history import resolve_baseline

        self.reports_dir = Path(config.getoption("--ep-reports"))
        # Each a one-line EventProcessorError on bad input: a typo never passes silently.
        self.overrides = parse_overrides(config.getoption("--slo"))
        self.tolerances = tolerances(config.getoption("--baseline-tolerance"))
        baseline = config.getoption("--baseline")
        # A path, "previous" (the newest stored run) or a git ref (its newest stored run).
        self.baseline_path = resolve_baseline(baseline, self.reports_dir) if baseline else None
        self.baseline = baseline_entries(self.baseline_path) if self.baseline_path else None
        self.scenarios = load_scenarios()
        wanted: list[str] = config.getoption("--ep-scenario")
        unknown = [n for n in wanted if n not in self.scenarios]
        if unknown:
            from event_processor.metrics.scenarios import ScenarioError

            raise ScenarioError(
                f"unknown scenario {unknown[0]!r} in --ep-scenario",
                f"use one of {', '.join(self.scenarios)}",
            )
        self.selected = [n for n in self.scenarios if not wanted or n in wanted]
        self.outcomes: list[Any] = []
        self.written: Path | None = None

    def scenario(self, name: str) -> Any:
        """A selected scenario with the session's SLO overrides."""
        return self.scenarios[name].with_slos(self.overrides)

    def measure(self, settings: Settings, prepared: Any, consumer: Any, capture: Any) -> Any:
        """Load -> collect -> result on the fixtures' clean slate, consumer and capture;
        gated against the session's baseline when one was given."""
        from event_processor.perf.harness import measure

        name = prepared.scenario.name
        baseline = None if self.baseline is None else self.baseline.get(name)
        outcome = measure(
            settings,
            prepared,
            consumer,
            capture,
            baseline=baseline,
            tolerances=self.tolerances if baseline is not None else None,
            verify_json=self.reports_dir / f"verify-{name}.json",
        )
        self.outcomes.append(outcome)
        return outcome


@pytest.fixture(scope="session")
def ep_warm_pipeline(ep_stack: Settings) -> Settings:
    """One unmeasured warm-up before the first gated scenario (JIT-compiles the JVMs;
    see perf.harness.warm_up_pipeline). A warm-up that did not deliver fails every test
    that asked for it, with the reason, instead of letting them measure a broken pipe."""
    from event_processor.perf.harness import WARM_UP_FAILED, warm_up_pipeline

    if not warm_up_pipeline(ep_stack):
        pytest.fail(WARM_UP_FAILED, pytrace=False)
    return ep_stack


@pytest.fixture
def ep_scenario(ep_perf: PerfSession, ep_scenario_name: str) -> Any:
    """The parametrized scenario with its plan (``perf.harness.PreparedScenario``)."""
    from event_processor.perf.harness import prepare

    return prepare(ep_perf.scenario(ep_scenario_name))


@pytest.fixture
def ep_clean_slate(ep_stack: Settings) -> Settings:
    """Every service healthy, source and read model empty, nothing in flight."""
    from event_processor.perf.harness import check_stack, clean_slate

    check_stack(ep_stack)
    clean_slate(ep_stack)
    return ep_stack


@pytest.fixture
def ep_scenario_consumer(ep_clean_slate: Settings, ep_scenario: Any) -> Iterator[Any]:
    """A consumer process running in the background for one scenario (a new group at
    the end of every change topic, the scenario's catalogue applied); stopped after."""
    from event_processor.perf.harness import scenario_consumer

    with scenario_consumer(ep_clean_slate, ep_scenario) as consumer:
        yield consumer


@pytest.fixture
def ep_timings(ep_clean_slate: Settings, ep_scenario_consumer: Any) -> Iterator[Any]:
    """The timing collector (and dead-letter reader) from where the scenario begins."""
    from event_processor.perf.harness import timing_capture

    with timing_capture(ep_clean_slate) as capture:
        yield capture


_PERF_KEY = pytest.StashKey[PerfSession]()
_EXTRAS_KEY = pytest.StashKey[list[tuple[str, Any]]]()


def pytest_configure(config: pytest.Config) -> None:
    from event_processor.errors import EventProcessorError

    try:
        config.stash[_PERF_KEY] = PerfSession(config)
    except EventProcessorError as exc:
        raise pytest.UsageError(exc.one_line()) from None


# Live-stack suites run in this order: the SLO-gated load scenarios first, on a stack
# no other suite has disturbed yet (in CI the fault suite restarts every process and
# the integrity suite writes 100,000-row tables; measured after them, the stress
# scenario's sink was twice as slow as in the demo a minute later), the fault suite
# last. Within a suite, file order.
SUITE_ORDER = ("unit", "stress", "integration", "integrity", "fault")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        for i, marker in enumerate(SUITE_ORDER):
            if item.get_closest_marker(marker) is not None:
                return i
        return len(SUITE_ORDER)

    items.sort(key=rank)  # stable: file order within a suite


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ep_scenario_name" in metafunc.fixturenames:
        names = metafunc.config.stash[_PERF_KEY].selected
        metafunc.parametrize("ep_scenario_name", names, ids=names)


@pytest.fixture(scope="session")
def ep_perf(request: pytest.FixtureRequest) -> PerfSession:
    """The session's PerfSession: ``ep_perf.run(settings, name)`` runs one scenario."""
    return request.config.stash[_PERF_KEY]


def attach_outcome(item: pytest.Item, outcome: Any) -> None:
    """Put a scenario's HTML fragment and plots into the pytest-html report of ``item``."""
    import base64

    extras = item.stash.setdefault(_EXTRAS_KEY, [])
    extras.append(("html", outcome.fragment()))
    for caption, png in outcome.plots.items():
        extras.append(("png", (base64.b64encode(png).decode(), caption)))
    for gate in (*outcome.gates, *outcome.baseline_gates):
        item.user_properties.append((f"{outcome.scenario.name}.{gate.name}", gate.message))


def attach_html(item: pytest.Item, fragment: str) -> None:
    """Put a self-contained HTML fragment (a sweep, capacity or race section with its
    inline plots) into the pytest-html report of ``item``."""
    item.stash.setdefault(_EXTRAS_KEY, []).append(("html", fragment))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when != "call" or _EXTRAS_KEY not in item.stash:
        return report
    html_plugin = item.config.pluginmanager.getplugin("html")
    if html_plugin is None:
        return report
    extras_api = html_plugin.extras
    extras = list(getattr(report, "extras", []))
    for kind, payload in item.stash[_EXTRAS_KEY]:
        if kind == "html":
            extras.append(extras_api.html(payload))
        else:
            content, caption = payload
            extras.append(extras_api.png(content, caption))
    report.extras = extras  # type: ignore[attr-defined]
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    perf = session.config.stash.get(_PERF_KEY, None)
    if perf is None or not perf.outcomes:
        return
    from event_processor.perf.results import write_reports

    latest, _stamped, _html = write_reports(perf.outcomes, perf.reports_dir)
    perf.written = latest


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    perf = config.stash.get(_PERF_KEY, None)
    if perf is None or not perf.outcomes:
        return
    from io import StringIO

    from rich.console import Console

    from event_processor.perf.results import document_for, results_table
    from event_processor.report.verdict import verdict_lines

    doc = document_for(perf.outcomes)
    buf = StringIO()
    Console(file=buf, width=160, highlight=False).print(results_table(doc))
    terminalreporter.section("event-processor scenarios")
    terminalreporter.write(buf.getvalue())
    for line in verdict_lines(doc):
        terminalreporter.write_line(line)
    if perf.written is not None:
        terminalreporter.write_line(f"results: {perf.written}")
