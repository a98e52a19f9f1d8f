"""What the subcommands share: the consoles, the scenario a `load` or `sweep` command
line asks for, and a wide console for tables (so cli.load and cli.tuning need not
import each other)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from event_processor.errors import ConfigError
from event_processor.metrics.scenarios import Scenario, default_slos, load_scenarios, select
from event_processor.metrics.slo import parse_overrides

# Messages and progress on stderr; results (tables, JSON) on stdout.
console = Console(stderr=True, highlight=False)
out = Console(highlight=False)

CUSTOM_NAME = "custom"
DEFAULT_SEED = 42
DEFAULT_TIMEOUT_S = 60.0


def resolve_scenario(
    args: argparse.Namespace, scenarios_path: Path | None = None, *, component: str = "load"
) -> Scenario:
    """The scenario a `load` (or `sweep`) command line asks for; bad input is a one-line
    ConfigError naming ``component``."""
    custom = args.events is not None or args.rate is not None
    if args.scenario and custom:
        raise ConfigError(component, "give either --scenario or --events/--rate, not both")
    overrides = parse_overrides(args.slo) if args.slo else {}
    if args.scenario:
        scenario = select(load_scenarios(scenarios_path), args.scenario)
        if args.seed is not None:
            scenario = replace(scenario, seed=args.seed)
        if args.warmup is not None:
            scenario = replace(scenario, warmup_events=args.warmup)
        if args.timeout is not None:
            scenario = replace(scenario, delivery_timeout_s=args.timeout)
        return scenario.with_slos(overrides)
    if args.events is None or args.rate is None:
        names = ", ".join(load_scenarios(scenarios_path))
        raise ConfigError(
            component, "no scenario given", f"use --scenario NAME ({names}) or --events N --rate R"
        )
    if args.events < 1:
        raise ConfigError(component, f"--events must be at least 1, got {args.events}")
    if not args.rate > 0:
        raise ConfigError(component, f"--rate must be above 0, got {args.rate:g}")
    warmup = args.warmup or 0
    if not 0 <= warmup < args.events:
        raise ConfigError(component, f"--warmup must be in 0..{args.events - 1}, got {warmup}")
    timeout = DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout
    if not timeout > 0:
        raise ConfigError(component, f"--timeout must be above 0, got {timeout:g}")
    return Scenario(
        name=CUSTOM_NAME,
        events=args.events,
        rate=args.rate,
        seed=DEFAULT_SEED if args.seed is None else args.seed,
        delivery_timeout_s=timeout,
        warmup_events=warmup,
        description=f"{args.events} events at {args.rate:g}/s",
        slos={**default_slos(scenarios_path), **overrides},
    )


def wide_console(console: Any) -> Any:
    """Logs and pipes get a table wide enough to show every column."""
    if not console.is_terminal:
        console.width = 160
    return console
