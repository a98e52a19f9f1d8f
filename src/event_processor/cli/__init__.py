"""The `event-processor` command line: a thin shell over the library.

One module per family of subcommands: ``pipeline`` (stack, consume, verify), ``load``
(load, demo, race, report), ``tuning`` (sweep, capacity); ``options`` holds what they
share. The dashboard's `dashboard` subcommand is registered by event_processor.dashboard.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from event_processor.cli.options import console
from event_processor.errors import EventProcessorError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a wrong option as one line naming the fix."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"event-processor: {message} (fix: see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="event-processor",
        description=(
            "PostgreSQL -> Debezium -> Kafka -> Python -> MongoDB CDC pipeline and its "
            "performance and integrity suite. Endpoints come from EP_* environment "
            "variables (see README); unset ones are started locally by `stack up`."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    from event_processor.cli import pipeline

    pipeline.add_subcommands(sub)  # stack, consume, verify
    from event_processor.cli.load import add_subcommands as add_perf_subcommands

    add_perf_subcommands(sub)  # load, demo, race, report
    from event_processor.cli.tuning import add_subcommands as add_tuning_subcommands

    add_tuning_subcommands(sub)  # sweep, capacity
    from event_processor.dashboard.attach import add_subcommand as add_dashboard_subcommand

    add_dashboard_subcommand(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except EventProcessorError as exc:
        console.print(f"[red]event-processor:[/] {exc.one_line()}", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("event-processor: interrupted")
        return 130
