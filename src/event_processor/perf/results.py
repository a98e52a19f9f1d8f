"""Result documents of harness runs: assembly, files on disk, the summary table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from event_processor.errors import ConfigError
from event_processor.metrics.slo import parse_tolerances
from event_processor.report.history import write_trend_page
from event_processor.report.schema import (
    LATEST_NAME,
    CapacitySection,
    Configuration,
    ResultDocument,
    ScenarioResult,
    SweepSection,
    build_document,
    git_commit,
    load_json,
    write_json,
)
from event_processor.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from event_processor.perf.harness import ScenarioOutcome
    from event_processor.race.run import RaceOutcome
    from event_processor.settings import Settings

DEFAULT_TOLERANCES = "p50:15%,p95:15%,p99:15%"


def default_reports_dir() -> Path:
    return PROJECT_ROOT / "reports"


def document(
    results: Sequence[ScenarioResult],
    configurations: Sequence[Configuration],
    *,
    commit: str | None = None,
) -> ResultDocument:
    """One document for several scenario runs; run-specific configuration goes per run."""
    if configurations:
        base = configurations[0].model_dump()
        for key in ("scenario", "seed"):
            base.pop(key, None)
        # Knobs that differ between runs (the generator's rate and connections) are each
        # run's own, not the page's: the first run's rate was shown for every scenario.
        shared = {
            k: v
            for k, v in configurations[0].knobs.items()
            if all(c.knobs.get(k) == v for c in configurations)
        }
        base["knobs"] = shared
        base["runs"] = {
            r.name: {k: getattr(c, k, None) for k in ("scenario", "seed")}
            | {"knobs": {k: v for k, v in c.knobs.items() if k not in shared}}
            for r, c in zip(results, configurations, strict=False)
        }
        config = Configuration.model_validate(base)
    else:
        config = Configuration()
    return build_document(results, config, commit=commit)


def document_for(
    outcomes: Sequence[ScenarioOutcome],
    *,
    sweep: SweepSection | None = None,
    capacity: CapacitySection | None = None,
) -> ResultDocument:
    doc = document(
        [o.result for o in outcomes],
        [o.configuration for o in outcomes],
        commit=git_commit(PROJECT_ROOT),
    )
    doc.sweep, doc.capacity = sweep, capacity
    return doc


def write_reports(
    outcomes: Sequence[ScenarioOutcome],
    reports_dir: Path,
    *,
    sweep: SweepSection | None = None,
    capacity: CapacitySection | None = None,
) -> tuple[Path, Path, Path]:
    """latest.json + a timestamped copy + a standalone HTML page; returns their paths."""
    from event_processor.report.html import render_standalone

    doc = document_for(outcomes, sweep=sweep, capacity=capacity)
    latest, stamped = write_json(doc, reports_dir)
    html = stamped.with_suffix(".html")
    page = render_standalone(doc, {o.scenario.name: o.plots for o in outcomes})
    html.write_text(page, encoding="utf-8")
    (reports_dir / "latest.html").write_text(page, encoding="utf-8")
    write_trend_page(reports_dir)
    return latest, stamped, html


def write_race_reports(
    settings: Settings, outcome: RaceOutcome, reports_dir: Path
) -> tuple[Path, Path, Path, ResultDocument]:
    """A race's document (section ``race``): latest.json, a timestamped copy, HTML."""
    from event_processor.report.html import render_standalone
    from event_processor.report.schema import configuration_from_settings

    # The connectors' documents per bulk write, as the race gave it to them.
    batches = [int(c.get("batch.size") or c.get("max.batch.size") or 0)
               for c in (s.config for s in outcome.result.sinks.values())]  # fmt: skip
    knobs = {"race_sink_batch_size": max(batches, default=0)}
    config = configuration_from_settings(settings, knobs=knobs, scenario="race")
    doc = build_document([], config, commit=git_commit(PROJECT_ROOT), race=outcome.result)
    latest, stamped = write_json(doc, reports_dir)
    html = stamped.with_suffix(".html")
    page = render_standalone(doc, {"race": outcome.plots})
    html.write_text(page, encoding="utf-8")
    (reports_dir / "latest.html").write_text(page, encoding="utf-8")
    write_trend_page(reports_dir)
    return latest, stamped, html, doc


def _ms(value: float) -> str:
    return f"{value:.1f}"


def results_table(doc: ResultDocument, title: str = "event-processor results") -> Table:
    """The per-scenario figures and verdicts as a Rich table."""
    table = Table(title=title)
    for col in ("scenario", "events", "applied", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms",
                "max ms", "rows/s", "success %", "dead-lettered", "integrity",
                "CPU s/1k rows", "host busy %", "load", "result"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("scenario", "result") else "right")
    for r in doc.scenarios:
        success = "-" if r.success_rate is None else f"{r.success_rate * 100:.2f}"
        integrity = r.slo.get("integrity")
        shown = "-" if integrity is None else ("ok" if integrity.passed else "FAILED")
        table.add_row(
            r.name,
            str(r.events),
            str(r.applied),
            _ms(r.e2e_ms.p50),
            _ms(r.e2e_ms.p95),
            _ms(r.e2e_ms.p99),
            _ms(r.e2e_ms.p999),
            _ms(r.e2e_ms.max),
            f"{r.throughput_eps:.1f}",
            success,
            str(r.dead_lettered),
            shown,
            f"{r.cost['cpu_s_per_1000_row_changes']:.3f}" if r.cost else "-",
            f"{r.cost['host_busy_pct']:.0f}" if r.cost else "-",
            "-" if not r.validity else ("as planned" if r.validity["valid"] else "[red]INVALID[/]"),
            "[green]PASSED[/]" if r.passed else "[red]FAILED[/]",
        )
    return table


def gate_lines(doc: ResultDocument) -> list[str]:
    """Every gate's message, failed ones first."""
    entries = [e for r in doc.scenarios for e in (*r.slo.values(), *r.baseline.values())]
    return [e.message for e in sorted(entries, key=lambda e: e.passed)]


def latest_path(reports_dir: Path | None = None) -> Path:
    return (reports_dir or default_reports_dir()) / LATEST_NAME


def read_document(path: Path) -> ResultDocument:
    """A result document, or a one-line ConfigError naming the file."""
    try:
        return load_json(path)
    except FileNotFoundError:
        raise ConfigError(
            "report", f"{path} not found", "run `event-processor load` or `pytest -m stress`"
        ) from None
    except (ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("report", f"{path} is not a result document: {first}") from None


def baseline_entries(path: Path) -> dict[str, dict[str, Any]]:
    """scenario name -> its figures in a baseline document."""
    doc = read_document(path)
    return {s.name: s.model_dump() for s in doc.scenarios}


def tolerances(items: Iterable[str]) -> dict[str, float]:
    """Baseline tolerances from option strings (default p50/p95/p99 at 15 %)."""
    texts = list(items) or [DEFAULT_TOLERANCES]
    return parse_tolerances(texts)


def entry_for(baseline: Mapping[str, Mapping[str, Any]] | None, name: str) -> Any:
    return None if baseline is None else baseline.get(name)
