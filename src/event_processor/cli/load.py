"""The `load` and `report` subcommands (registered by event_processor.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from event_processor.cli.options import resolve_scenario, wide_console
from event_processor.errors import ConfigError
from event_processor.metrics.scenarios import ScenarioError, load_scenarios
from event_processor.race.sinks import ALL_SINKS, DEFAULT_SINKS, parse_sinks


def add_subcommands(sub: Any) -> None:
    """Add `load`, `demo`, `race` and `report` to the CLI's subparsers."""
    load = sub.add_parser(
        "load",
        help="run a load scenario end to end, gate it on its SLOs and on integrity",
        description=(
            "Reset source and read model, run the open-loop generator against the running "
            "stack, measure every event, verify integrity; writes reports/latest.json, a "
            "timestamped copy and an HTML page. Exit 1 when a gate failed."
        ),
    )
    load.add_argument("--scenario", metavar="NAME", help="a scenario of scenarios.toml")
    load.add_argument("--events", type=int, metavar="N", help="custom run: number of events")
    load.add_argument("--rate", type=float, metavar="R", help="custom run: events per second")
    load.add_argument("--seed", type=int, metavar="S", help="workload seed (custom run: 42)")
    load.add_argument("--warmup", type=int, metavar="N", help="first events left out of figures")
    load.add_argument("--timeout", type=float, metavar="S",
                      help="delivery timeout after the last send (custom run: 60)")  # fmt: skip
    load.add_argument("--slo", action="append", default=[], metavar="NAME=VALUE",
                      help="override an SLO, e.g. --slo p99=150ms (repeatable)")  # fmt: skip
    load.add_argument("--baseline", metavar="PATH|previous|REF",
                      help="compare with an earlier result (a result JSON, previous = the newest "
                           "stored run, or a git ref: its newest stored run); fail on "
                           "regressions")  # fmt: skip
    load.add_argument("--baseline-tolerance", action="append", default=[],
                      metavar="METRIC:PCT",
                      help="allowed regression, e.g. p95:15%% (default p50,p95,p99)")  # fmt: skip
    load.add_argument("--sink", choices=("ours", "external"), default="ours",
                      help="external: measure your own pipeline from the outside, without "
                      "starting our consumer (mapping: EP_EXTERNAL_TABLE, EP_EXTERNAL_DATABASE,"
                      " EP_EXTERNAL_COLLECTION, EP_EXTERNAL_ID, EP_EXTERNAL_TOPIC; README "
                      "\"Measuring your own pipeline\")")  # fmt: skip
    load.add_argument("--no-dashboard", action="store_true", help="no live dashboard")
    load.add_argument("--reports", type=Path, metavar="DIR", help="output directory (reports/)")
    load.add_argument("--json", action="store_true", help="print the result document as JSON")
    load.set_defaults(func=cmd_load)

    demo = sub.add_parser(
        "demo",
        help="run every scenario (10, 100, 1,000, 10,000 events) with the live dashboard",
        description="The one-command demo: each scenario of scenarios.toml in order, each "
        "ending in the verifier, then a summary table and the report paths. Exit 1 when "
        "any gate failed.",
    )
    demo.add_argument(
        "--scenario", action="append", metavar="NAME", help="only these scenarios (repeatable)"
    )
    demo.add_argument("--no-dashboard", action="store_true", help="compact progress lines")
    demo.add_argument("--reports", type=Path, metavar="DIR", help="output directory (reports/)")
    demo.set_defaults(func=cmd_demo)

    race = sub.add_parser(
        "race",
        help="race peer sinks (quix-streams, MongoDB's and Debezium's sink connectors) "
        "against our consumer on one workload",
        description="Each sink consumes the same change topics into a database of its own "
        "in the same MongoDB-wire store; one watcher times each row from its commit "
        "(source.ts_us) to its document being visible. Per repeat, each sink runs alone at "
        "the offered rate (latency), then alone draining the same pre-produced backlog "
        "(rows/s, CPU per 1,000 rows of its process), in the same order every repeat; then "
        "all at once. Every sink's database is checked against PostgreSQL after each leg. "
        "Writes reports/latest.json (section race), a timestamped copy and an HTML page. "
        "Exit 1 when our consumer missed or got a row wrong.",
    )
    race.add_argument("--sinks", default=",".join(DEFAULT_SINKS), metavar="LIST",
                      help=f"comma list of {', '.join(ALL_SINKS)} (default all; ours always "
                      "races)")  # fmt: skip
    race.add_argument("--events", type=int, default=2000, metavar="N",
                      help="rows per leg, and the backlog's size (default 2000)")  # fmt: skip
    race.add_argument("--rate", type=float, default=500.0, metavar="R",
                      help="inserts per second in the legs at a rate (default 500)")  # fmt: skip
    race.add_argument("--repeats", type=int, default=3, metavar="K",
                      help="times each sink runs alone, interleaved (default 3)")  # fmt: skip
    race.add_argument("--no-together", action="store_true",
                      help="leave out the leg with every sink at once")  # fmt: skip
    race.add_argument("--backlog", type=int, metavar="N",
                      help="rows of the backlog each sink drains (default: --events)")  # fmt: skip
    race.add_argument("--timeout", type=float, default=60.0, metavar="S",
                      help="wait for visibility after a leg's last insert "
                      "(default 60)")  # fmt: skip
    race.add_argument("--poll-ms", type=float, default=2.0, metavar="MS",
                      help="watcher poll interval (default 2)")  # fmt: skip
    race.add_argument(
        "--sink-batch-size",
        type=int,
        metavar="N",
        help="documents per bulk write of the connectors (default EP_RACE_SINK_BATCH_SIZE)",
    )
    race.add_argument("--reports", type=Path, metavar="DIR", help="output directory (reports/)")
    race.add_argument("--json", action="store_true", help="print the result document as JSON")
    race.set_defaults(func=cmd_race)

    report = sub.add_parser("report", help="print the results table of the latest run")
    report.add_argument("--json", type=Path, metavar="PATH", dest="path",
                        help="result document to show (default reports/latest.json)")  # fmt: skip
    report.add_argument("--history", action="store_true",
                        help="every stored run per scenario, with its change against the run "
                             "before (also reports/index.html)")  # fmt: skip
    report.add_argument("--reports", type=Path, metavar="DIR",
                        help="where the runs are stored (default reports/)")  # fmt: skip
    report.add_argument("--baseline", metavar="PATH|previous|REF",
                        help="with --history: the newest run's change against this result "
                             "(a file, previous, or a git ref)")  # fmt: skip
    report.set_defaults(func=cmd_report)


def cmd_load(args: argparse.Namespace) -> int:
    from rich.console import Console

    from event_processor.perf.harness import RunView, run_scenario
    from event_processor.perf.results import (
        baseline_entries,
        default_reports_dir,
        document_for,
        gate_lines,
        results_table,
        tolerances,
        write_reports,
    )
    from event_processor.report.history import resolve_baseline
    from event_processor.report.schema import to_json
    from event_processor.settings import get_settings

    err = Console(stderr=True, highlight=False)
    out = wide_console(Console(highlight=False))
    scenario = resolve_scenario(args)
    if args.sink == "external":
        return _load_external(args, scenario, out, err)
    tols = tolerances(args.baseline_tolerance) if args.baseline else {}
    reports_dir = args.reports or default_reports_dir()
    baseline_path = resolve_baseline(args.baseline, reports_dir) if args.baseline else None
    baseline = baseline_entries(baseline_path).get(scenario.name) if baseline_path else None
    if baseline_path:
        if baseline is None:
            err.print(f"baseline {baseline_path} has no scenario {scenario.name!r}: not compared")
        else:
            err.print(f"baseline: {baseline_path}", soft_wrap=True)
    settings = get_settings()
    view = RunView(
        dashboard=not args.no_dashboard,
        console=err,
        progress=args.no_dashboard and not args.json,
        say=lambda msg: err.print(f"[dim]{msg}[/]"),
    )
    outcome = run_scenario(settings, scenario, view=view, baseline=baseline, tolerances=tols)
    latest, stamped, html = write_reports([outcome], reports_dir)
    doc = document_for([outcome])
    if args.json:
        out.print_json(to_json(doc))
    else:
        out.print(results_table(doc))
        for line in gate_lines(doc):
            out.print(line, soft_wrap=True)
        for line in outcome.verify.lines:
            out.print(line, soft_wrap=True)
        _print_verdict(out, doc)
    for msg in outcome.failures():
        if not any(msg == g for g in gate_lines(doc)):
            err.print(f"[red]{msg}[/]", soft_wrap=True)
    err.print(f"wrote {latest}, {stamped.name}, {html.name}", soft_wrap=True)
    return 0 if outcome.passed else 1


def _load_external(args: argparse.Namespace, scenario: Any, out: Any, err: Any) -> int:
    """`load --sink external`: the user's pipeline timed from the outside (race.external)."""
    from event_processor.perf.results import default_reports_dir, write_race_reports
    from event_processor.race.external import outcome_lines, run_external
    from event_processor.race.result import external_result
    from event_processor.race.run import RaceOutcome
    from event_processor.report.schema import to_json
    from event_processor.settings import get_settings

    settings = get_settings()
    outcome = run_external(settings, scenario, say=lambda msg: err.print(f"[dim]{msg}[/]"))
    result = external_result(scenario, outcome)
    latest, stamped, html, doc = write_race_reports(
        settings, RaceOutcome(result, {"external": outcome.samples_ms}),
        args.reports or default_reports_dir(),
    )  # fmt: skip
    if args.json:
        out.print_json(to_json(doc))
    else:
        for line in outcome_lines(outcome):
            out.print(line, soft_wrap=True)
        out.print("PASSED" if outcome.passed else "[red]FAILED[/]")
    err.print(f"wrote {latest}, {stamped.name}, {html.name}", soft_wrap=True)
    return 0 if outcome.passed else 1


def _print_history(out: Any, reports_dir: Path, baseline_spec: str | None = None) -> int:
    """One table per scenario: every stored run, newest first, with its change against
    the run before; writes the trend page too."""
    from rich.table import Table

    from event_processor.report.history import (
        against_baseline,
        delta_pct,
        history,
        resolve_baseline,
        write_trend_page,
    )

    runs = history(reports_dir)
    if not runs:
        raise ConfigError("report", f"no stored result in {reports_dir}",
                          "run `event-processor load` or `pytest -m stress` first")  # fmt: skip

    def delta(now: float, before: float | None) -> str:
        pct = None if before is None else delta_pct(now, before)
        return "-" if pct is None else f"{pct:+.0f} %"

    baseline = resolve_baseline(baseline_spec, reports_dir) if baseline_spec else None
    versus = against_baseline(runs, baseline) if baseline is not None else {}
    for name, rows in sorted(runs.items()):
        table = Table(title=f"{name}: {len(rows)} runs, newest first")
        for col in ("time (UTC)", "commit", "p50 ms", "Δ p50", "p99 ms", "Δ p99",
                    "row changes/s", "Δ rate", "result"):  # fmt: skip
            table.add_column(col, justify="left" if col in ("time (UTC)", "commit") else "right")
        for i in range(len(rows) - 1, -1, -1):
            r, prev = rows[i], rows[i - 1] if i else None
            table.add_row(
                r.generated_at, (r.commit or "?")[:10],
                f"{r.p50_ms:.1f}", delta(r.p50_ms, prev.p50_ms if prev else None),
                f"{r.p99_ms:.1f}", delta(r.p99_ms, prev.p99_ms if prev else None),
                f"{r.row_changes_per_s:.1f}",
                delta(r.row_changes_per_s, prev.row_changes_per_s if prev else None),
                "[green]PASSED[/]" if r.passed else "[red]FAILED[/]",
            )  # fmt: skip
        out.print(table)
        if name in versus:
            out.print(f"{name}: {versus[name]}", soft_wrap=True)
    out.print(f"trend page: {write_trend_page(reports_dir, baseline)}", soft_wrap=True)
    return 0


def _print_verdict(out: Any, doc: Any) -> None:
    """The first screen of the HTML page, last in the terminal (where the eye ends)."""
    from rich.markup import escape

    from event_processor.report.verdict import failed_gates, verdict_lines

    failed = set(failed_gates(doc))
    lines = verdict_lines(doc)
    if lines:
        out.rule("[bold red]why it failed[/]" if failed else "[bold]verdict[/]")
    for line in lines:
        text = escape(line)
        out.print(f"[red]{text}[/]" if line in failed else text, soft_wrap=True)


def cmd_demo(args: argparse.Namespace) -> int:
    """Every scenario of scenarios.toml in order, live dashboard, one summary at the end."""
    from rich.console import Console

    from event_processor.perf.harness import RunView, run_scenario
    from event_processor.perf.results import (
        default_reports_dir,
        document_for,
        gate_lines,
        results_table,
        write_reports,
    )
    from event_processor.settings import get_settings

    err = Console(stderr=True, highlight=False)
    out = wide_console(Console(highlight=False))
    settings = get_settings()
    scenarios = load_scenarios()
    names = args.scenario or list(scenarios)
    unknown = [n for n in names if n not in scenarios]
    if unknown:
        raise ScenarioError(f"unknown scenario {unknown[0]!r}; known: {', '.join(scenarios)}")
    outcomes = []
    reports_dir = args.reports or default_reports_dir()
    from event_processor.perf.harness import WARM_UP_FAILED, warm_up_pipeline

    err.rule("[bold]warm-up[/]: not measured")
    warmed = warm_up_pipeline(settings, on_progress=lambda msg: err.print(f"[dim]{msg}[/]"))
    if not warmed:
        # Loudly: the scenarios still run (their own figures say how bad it is), but the
        # demo fails whatever they show.
        err.print(f"[red]{WARM_UP_FAILED}[/]", soft_wrap=True)
    for name in names:
        err.rule(f"[bold]{name}[/]: {scenarios[name].events} events at {scenarios[name].rate:g}/s")
        svg = reports_dir / f"dashboard-{name}.svg"
        svg.unlink(missing_ok=True)
        view = RunView(
            dashboard=not args.no_dashboard,
            console=err,
            progress=args.no_dashboard,
            dashboard_svg=svg,
            say=lambda msg: err.print(f"[dim]{msg}[/]"),
        )
        outcomes.append(run_scenario(settings, scenarios[name], view=view))
        if svg.exists():
            err.print(f"dashboard capture: {svg}", soft_wrap=True)
    latest, _stamped, html = write_reports(outcomes, reports_dir)
    doc = document_for(outcomes)
    err.rule("[bold]summary[/]")
    out.print(results_table(doc))
    for line in gate_lines(doc):
        out.print(line, soft_wrap=True)
    _print_verdict(out, doc)
    err.print(f"reports: {latest} and {reports_dir / html.name}", soft_wrap=True)
    if not warmed:
        err.print(f"[red]{WARM_UP_FAILED}[/]", soft_wrap=True)
    return 0 if warmed and all(o.passed for o in outcomes) else 1


def check_race_args(args: argparse.Namespace) -> None:
    """Bad `race` input is a one-line ConfigError."""
    if args.events < 1:
        raise ConfigError("race", f"--events must be at least 1, got {args.events}")
    if not args.rate > 0:
        raise ConfigError("race", f"--rate must be above 0, got {args.rate:g}")
    if not args.timeout > 0:
        raise ConfigError("race", f"--timeout must be above 0, got {args.timeout:g}")
    if args.backlog is not None and args.backlog < 1:
        raise ConfigError("race", f"--backlog must be at least 1, got {args.backlog}")
    if args.repeats < 1:
        raise ConfigError("race", f"--repeats must be at least 1, got {args.repeats}")
    parse_sinks(args.sinks)
    if not 0 < args.poll_ms <= 1000:
        raise ConfigError("race", f"--poll-ms must be in (0, 1000], got {args.poll_ms:g}")
    size = args.sink_batch_size
    if size is not None and not 1 <= size <= 200:
        raise ConfigError(
            "race",
            f"--sink-batch-size must be in 1..200, got {size}",
            "FerretDB holds a PostgreSQL connection per statement of a command (pool 200)",
        )


def cmd_race(args: argparse.Namespace) -> int:
    from rich.console import Console

    from event_processor.perf.results import default_reports_dir, write_race_reports
    from event_processor.race.result import race_table
    from event_processor.race.run import run_race
    from event_processor.report.schema import to_json
    from event_processor.settings import get_settings

    check_race_args(args)
    sinks = parse_sinks(args.sinks)
    err = Console(stderr=True, highlight=False)
    out = wide_console(Console(highlight=False))
    settings = get_settings()
    outcome = run_race(
        settings,
        args.events,
        args.rate,
        sinks=sinks,
        repeats=args.repeats,
        backlog_rows=args.backlog,
        together=not args.no_together,
        timeout_s=args.timeout,
        poll_ms=args.poll_ms,
        batch_size=args.sink_batch_size,
        on_progress=lambda msg: err.print(f"[dim]{msg}[/]"),
    )
    latest, stamped, html, doc = write_race_reports(
        settings, outcome, args.reports or default_reports_dir()
    )
    if args.json:
        out.print_json(to_json(doc))
    else:
        out.print(race_table(outcome.result))
        for note in outcome.result.notes:
            out.print(f"  {note}", soft_wrap=True)
    if not outcome.result.passed:
        ours = outcome.result.sinks.get("ours")
        why = "; ".join(ours.integrity_problems) if ours else ""
        err.print(f"[red]race: our consumer did not make every row visible and exact within "
                  f"{args.timeout:g} s of a leg's last insert{': ' + why if why else ''}[/]",
                  soft_wrap=True)  # fmt: skip
    err.print(f"wrote {latest}, {stamped.name}, {html.name}", soft_wrap=True)
    return 0 if outcome.result.passed else 1


def cmd_report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from event_processor.perf.results import (
        default_reports_dir,
        gate_lines,
        latest_path,
        read_document,
        results_table,
    )

    out = wide_console(Console(highlight=False))
    if args.history:
        return _print_history(out, args.reports or default_reports_dir(), args.baseline)
    path: Path = args.path or latest_path(args.reports)
    doc = read_document(path)
    title = f"{path.name} ({doc.generated_at}, commit {(doc.commit or 'unknown')[:12]})"
    if doc.scenarios or doc.race is None:
        out.print(results_table(doc, title=title))
    if doc.race is not None:
        from event_processor.race.result import race_table

        out.print(race_table(doc.race))
    for line in gate_lines(doc):
        out.print(line, soft_wrap=True)
    _print_verdict(out, doc)
    return 0
