"""The `sweep` and `capacity` subcommands (registered by event_processor.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from event_processor.errors import ConfigError
from event_processor.perf.knobs import knob_names

DEFAULT_CAPACITY_START = 250.0
DEFAULT_CAPACITY_MAX = 8000.0
DEFAULT_CAPACITY_DURATION_S = 10.0
DEFAULT_P99_MS = 200.0


def add_subcommands(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="run a scenario at each setting of one or more tuning knobs",
        description=(
            "For each setting (the cartesian product of the --knob values) apply it "
            "(connector knobs: the Debezium connector's config; consumer knobs: the "
            "harness consumer's environment), run the scenario from a clean state and "
            "record p50/p95/p99, throughput and success. The original configuration is "
            "restored at the end, also after an error or Ctrl-C. Writes reports/latest.json "
            "(a `sweep` section) and an HTML page. Exit 1 when a run lost or corrupted data; "
            f"an SLO missed at some setting is a finding, not a failure. Knobs: {knob_names()}."
        ),
    )
    sweep.add_argument("--knob", action="append", default=[], metavar="NAME=V1,V2,...",
                       help="a knob and its values, e.g. poll.interval.ms=1,500 "
                       "(repeatable: several knobs are combined)")  # fmt: skip
    _scenario_args(sweep)
    sweep.add_argument("--repeat", type=int, default=1, metavar="K",
                       help="runs per setting (default 1)")  # fmt: skip
    sweep.add_argument("--reports", type=Path, metavar="DIR", help="output directory (reports/)")
    sweep.add_argument("--json", action="store_true", help="print the sweep section as JSON")
    sweep.set_defaults(func=cmd_sweep)

    cap = sub.add_parser(
        "capacity",
        help="find the highest offered rate the pipeline sustains within its p99 SLO",
        description=(
            "Rate search like the OpenMessaging Benchmark's: fixed-duration open-loop steps, "
            "the rate doubled while steps are good, then bisected between the last good and "
            "the first bad rate. A step is good when every change arrived, integrity holds, "
            "p99 is within --p99, the applied rate keeps up with the offered one and the "
            "backlog does not grow. Rates are business events/s (~2 row changes each). "
            "Writes a `capacity` section and the latency-vs-rate curve into the report."
        ),
    )
    cap.add_argument("--start", type=float, default=DEFAULT_CAPACITY_START, metavar="R",
                     help=f"first rate, events/s (default {DEFAULT_CAPACITY_START:g})")  # fmt: skip
    cap.add_argument("--max", type=float, default=DEFAULT_CAPACITY_MAX, metavar="R",
                     dest="maximum",
                     help=f"highest rate tried (default {DEFAULT_CAPACITY_MAX:g})")  # fmt: skip
    cap.add_argument("--duration", type=float, default=DEFAULT_CAPACITY_DURATION_S,
                     metavar="S", help="seconds of load per step (default "
                     f"{DEFAULT_CAPACITY_DURATION_S:g})")  # fmt: skip
    cap.add_argument("--p99", metavar="MS", help="p99 SLO, e.g. 200 or 200ms (default: the "
                     "scenarios' default p99)")  # fmt: skip
    cap.add_argument("--precision", type=float, default=0.1, metavar="F",
                     help="stop bisecting within this fraction (default 0.1)")  # fmt: skip
    cap.add_argument("--max-steps", type=int, default=12, metavar="N",
                     help="step budget (default 12)")  # fmt: skip
    cap.add_argument("--seed", type=int, default=42, metavar="S", help="workload seed")
    cap.add_argument("--reports", type=Path, metavar="DIR", help="output directory (reports/)")
    cap.add_argument("--json", action="store_true", help="print the capacity section as JSON")
    cap.set_defaults(func=cmd_capacity)


def _scenario_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", metavar="NAME", help="a scenario of scenarios.toml")
    parser.add_argument("--events", type=int, metavar="N", help="custom run: number of events")
    parser.add_argument("--rate", type=float, metavar="R", help="custom run: events per second")
    parser.add_argument("--seed", type=int, metavar="S", help="workload seed")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="delivery timeout after the last send")  # fmt: skip
    parser.set_defaults(warmup=None, slo=[])


def _say(err: Any) -> Any:
    return lambda msg: err.print(msg, soft_wrap=True, markup=False, highlight=False)


def _consoles() -> tuple[Any, Any]:
    from rich.console import Console

    from event_processor.cli.options import wide_console

    return Console(stderr=True, highlight=False), wide_console(Console(highlight=False))


def cmd_sweep(args: argparse.Namespace) -> int:
    from event_processor.cli.options import resolve_scenario
    from event_processor.perf.knobs import parse_knobs
    from event_processor.perf.results import default_reports_dir, write_reports
    from event_processor.perf.sweep import SweepInterrupted, run_sweep
    from event_processor.settings import get_settings

    knobs = parse_knobs(args.knob)
    if args.repeat < 1:
        raise ConfigError("sweep", f"--repeat must be at least 1, got {args.repeat}")
    scenario = resolve_scenario(args, component="sweep")
    err, out = _consoles()
    settings = get_settings()
    from event_processor.perf.harness import check_stack

    check_stack(settings)
    try:
        sweep = run_sweep(settings, scenario, knobs, repeat=args.repeat, say=_say(err))
    except SweepInterrupted as stop:
        if stop.partial.outcomes:
            _write(write_reports, stop.partial.outcomes, args.reports or default_reports_dir(),
                   err, sweep=stop.partial.section)  # fmt: skip
        raise stop.cause from None
    _write(write_reports, sweep.outcomes, args.reports or default_reports_dir(), err,
           sweep=sweep.section)  # fmt: skip
    if args.json:
        out.print_json(sweep.section.model_dump_json())
    else:
        out.print(sweep_table(sweep.section))
    lost = [p.label for p in sweep.section.points if not (p.delivered and p.integrity_ok)]
    for name in lost:
        err.print(f"[red]sweep: {name}: data was lost or differs (integrity FAILED)[/]")
    return 1 if lost else 0


def cmd_capacity(args: argparse.Namespace) -> int:
    from event_processor.perf.capacity import CapacityInterrupted, RateSearch, run_capacity
    from event_processor.perf.harness import check_stack
    from event_processor.perf.results import default_reports_dir, write_reports
    from event_processor.settings import get_settings

    p99 = resolve_p99(args.p99)
    if not args.duration > 0:
        raise ConfigError("capacity", f"--duration must be above 0, got {args.duration:g}")
    if not 0 < args.precision < 1:
        raise ConfigError("capacity", f"--precision must be in (0, 1), got {args.precision:g}")
    if args.max_steps < 1:
        raise ConfigError("capacity", f"--max-steps must be at least 1, got {args.max_steps}")
    controller = RateSearch(start=args.start, maximum=args.maximum, precision=args.precision,
                            max_steps=args.max_steps)  # fmt: skip
    err, out = _consoles()
    settings = get_settings()
    check_stack(settings)
    reports = args.reports or default_reports_dir()
    say = _say(err)
    try:
        run = run_capacity(settings, controller, duration_s=args.duration, p99_ms=p99,
                           seed=args.seed, say=say)  # fmt: skip
    except CapacityInterrupted as stop:
        if stop.partial.outcomes:
            _write(write_reports, stop.partial.outcomes, reports, err,
                   capacity=stop.partial.section)  # fmt: skip
        raise stop.cause from None
    _write(write_reports, run.outcomes, reports, err, capacity=run.section)
    cap = run.section
    if args.json:
        out.print_json(cap.model_dump_json(exclude={"steps": {"__all__": {"backlog_curve"}}}))
    else:
        out.print(capacity_table(cap))
        out.print(
            f"capacity: {cap.capacity_rate:g} business events/s (~{cap.capacity_row_rate:.0f} "
            f"row changes/s) at p99 <= {cap.p99_slo_ms:g} ms; {cap.limited_by}",
            soft_wrap=True,
        )
    broken = [s.rate for s in cap.steps if not s.integrity_ok]
    for rate in broken:
        err.print(f"[red]capacity: at {rate:g}/s the integrity verifier FAILED[/]")
    return 1 if broken else 0


def resolve_p99(text: str | None) -> float:
    """--p99 in ms (a bare number or with a unit); default: the scenarios' default p99."""
    from event_processor.metrics.scenarios import default_slos
    from event_processor.metrics.slo import parse_target

    if text is None:
        return default_slos().get("p99", DEFAULT_P99_MS)
    try:
        value = parse_target("p99", text)
    except ConfigError as exc:
        raise ConfigError("capacity", f"--p99 {text!r}: {exc.problem}",
                          "give milliseconds, e.g. --p99 200") from None  # fmt: skip
    if not value > 0:
        raise ConfigError("capacity", f"--p99 must be above 0, got {text!r}")
    return value


def _write(
    write_reports: Any, outcomes: list[Any], reports: Path, err: Any, **section: Any
) -> None:
    latest, stamped, html = write_reports(outcomes, reports, **section)
    err.print(f"wrote {latest}, {stamped.name}, {html.name}", soft_wrap=True)


def sweep_table(section: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"sweep: {section.scenario} ({section.events} events at "
                  f"{section.rate:g}/s)")  # fmt: skip
    for col in ("setting", "run", "p50 ms", "p95 ms", "p99 ms", "rows/s", "success %",
                "integrity", "SLOs", "harness %"):  # fmt: skip
        table.add_column(col, justify="left" if col == "setting" else "right")
    for p in section.points:
        table.add_row(
            p.label, str(p.run), f"{p.p50_ms:.1f}", f"{p.p95_ms:.1f}", f"{p.p99_ms:.1f}",
            f"{p.throughput_eps:.0f}",
            "-" if p.success_rate is None else f"{p.success_rate * 100:.2f}",
            "ok" if p.delivered and p.integrity_ok else "FAILED",
            "met" if p.slo_passed else "missed",
            "-" if p.harness_cost_pct is None else f"{p.harness_cost_pct:.2f}",
        )  # fmt: skip
    return table


def capacity_table(section: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"capacity search (steps of {section.duration_s:g} s, p99 <= "
                  f"{section.p99_slo_ms:g} ms)")  # fmt: skip
    for col in ("events/s", "rows/s", "p50 ms", "p99 ms", "applied/s", "sent/s",
                "backlog Q2->Q4", "growth rows/s", "verdict"):  # fmt: skip
        table.add_column(col, justify="left" if col == "verdict" else "right")
    for s in section.steps:
        table.add_row(
            f"{s.rate:g}", f"{s.row_rate:.0f}", f"{s.p50_ms:.1f}", f"{s.p99_ms:.1f}",
            f"{s.applied_rate:.0f}", f"{s.sent_rate:.0f}",
            f"{s.backlog_mid:.0f}->{s.backlog_end:.0f}", f"{s.backlog_growth:.0f}",
            "good" if s.good else "bad: " + "; ".join(s.reasons),
        )  # fmt: skip
    return table
