"""The `stack`, `consume` and `verify` subcommands: run the pipeline and check it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from event_processor.cli.options import console, out


def add_subcommands(sub: Any) -> None:
    stack = sub.add_parser("stack", help="start, stop or inspect the local CDC stack")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--json", action="store_true", help="machine-readable output")
    stack.add_argument("--purge", action="store_true", help="with down: delete all data too")
    stack.set_defaults(func=cmd_stack)

    consume = sub.add_parser("consume", help="run the event processor (Kafka -> MongoDB)")
    consume.add_argument("--group", help="consumer group (default EP_CONSUMER_GROUP)")
    consume.add_argument("--consumer-id", help="name of this process in timing records")
    consume.add_argument("--metrics-port", type=int, help="Prometheus port on 127.0.0.1 (0 = off)")
    consume.add_argument("--idle-exit", type=float, metavar="S", help="exit after S seconds idle")
    consume.add_argument("-v", "--verbose", action="store_true")
    consume.set_defaults(func=cmd_consume)

    verify = sub.add_parser(
        "verify",
        help="prove every committed change arrived: PostgreSQL vs the MongoDB read model",
        description="Waits for the pipeline to drain, then compares PostgreSQL with the read "
        "model: counts, every row's content, deletes, references, orphans, duplicates. "
        "Exit 0 only when everything holds.",
    )
    verify.add_argument("--json", metavar="PATH", help="also write a JSON report here")
    verify.add_argument(
        "--timeout",
        type=float,
        default=60,
        metavar="S",
        help="how long to wait for the pipeline to drain (default 60)",
    )
    verify.add_argument(
        "--group", help="consumer group whose lag must be zero (default EP_CONSUMER_GROUP)"
    )
    verify.add_argument("--sink", choices=("ours", "external"), default="ours",
                        help="external: the black-box benchmark table against your "
                        "pipeline's documents, by the EP_EXTERNAL_* mapping")  # fmt: skip
    verify.set_defaults(func=cmd_verify)


def cmd_stack(args: argparse.Namespace) -> int:
    from event_processor.settings import get_settings
    from event_processor.stack import manager

    settings = get_settings()
    if args.action == "up":

        def say(name: str, text: str) -> None:
            if not args.json:
                console.print(f"[bold]{name:>9}[/] {text}")

        report = manager.up(settings, say=say)
        if args.json:
            out.print_json(
                json.dumps({"seconds": round(report.seconds, 2), "steps": dict(report.lines)})
            )
        else:
            console.print(f"[green]stack up[/] in {report.seconds:.1f} s")
        return 0
    if args.action == "down":
        result = manager.down(settings, purge=args.purge)
        if args.json:
            out.print_json(json.dumps(dict(result)))
        else:
            for name, text in result:
                console.print(f"[bold]{name:>9}[/] {text}")
        return 0
    status = manager.status(settings, cost_window_s=1.0)
    if args.json:
        out.print_json(json.dumps(status))
    else:
        _print_status(status)
    return 0 if status["ok"] else 1


def _print_status(status: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="event-processor stack")
    for col in ("service", "ok", "endpoint", "pid", "rss MB", "detail"):
        table.add_column(col)
    endpoints = {"postgres": "dsn", "kafka": "bootstrap", "connect": "url", "mongo": "uri"}
    for name, key in endpoints.items():
        s = status[name]
        detail = s["detail"] if name != "connect" else f"connector {s['connector_state']}"
        table.add_row(
            name,
            "[green]yes[/]" if s["ok"] else "[red]no[/]",
            str(s[key]),
            str(s.get("pid") or ("external" if not s.get("managed") else "-")),
            str(s.get("rss_mb") or "-"),
            detail,
        )
    out.print(table)
    cost = status.get("cost")
    if cost and cost.get("groups"):
        shares = ", ".join(
            f"{name} {g['share_of_a_core_pct']:.0f} %" for name, g in cost["groups"].items()
        )
        out.print(f"CPU over {cost['window_s']:.0f} s: host {cost['host_busy_pct']:.0f} % busy "
                  f"(steal {cost['host_steal_pct']:.1f} %); {shares} of a core")  # fmt: skip


def cmd_consume(args: argparse.Namespace) -> int:
    import logging

    from event_processor.consumer.loop import ConsumerOptions, ConsumerRunner
    from event_processor.settings import get_settings

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = ConsumerOptions(metrics_port=args.metrics_port, idle_exit_s=args.idle_exit)
    if args.consumer_id:
        options.consumer_id = args.consumer_id
    if args.group:
        options.group = args.group
    runner = _connecting("consumer", lambda: ConsumerRunner(get_settings(), options))
    console.print(f"consumer {options.consumer_id} running (SIGTERM drains and exits)")
    return int(runner.run())


def cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from event_processor.settings import get_settings
    from event_processor.verify import run_verify

    if args.sink == "external":
        from event_processor.race.external import mapping_from, verify_external
        from event_processor.race.result import integrity_text

        settings = get_settings()
        check = verify_external(settings)
        where = ", ".join(f"{k} {v}" for k, v in mapping_from(settings).describe().items())
        out.print(f"verify (external, {where}): {integrity_text(check)}", soft_wrap=True)
        return 0 if check.exact else 1
    json_path = Path(args.json) if args.json else None
    with console.status("verify: waiting for the pipeline to drain, then comparing…"):
        report = run_verify(get_settings(), args.timeout, json_path, group=args.group)
    for line in report.summary_lines():
        out.print(line, soft_wrap=True)
    if json_path:
        console.print(f"verify: JSON report written to {json_path}")
    return 0 if report.ok else 1


def _connecting(component: str, build: Callable[[], Any]) -> Any:
    """Build a client; an unreachable endpoint becomes a one-line StackError."""
    from kafka.errors import KafkaError

    from event_processor.errors import StackError

    try:
        return build()
    except KafkaError as exc:
        raise StackError(
            component,
            f"Kafka is not usable ({type(exc).__name__}: {exc})",
            "run `event-processor stack up` or check EP_KAFKA_BOOTSTRAP",
        ) from None
    except OSError as exc:
        raise StackError(
            component, f"cannot bind or connect: {exc}", "check the ports and endpoints"
        ) from None
