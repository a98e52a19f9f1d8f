"""`event-processor dashboard`: the live dashboard attached to a running pipeline.

It needs no generator of its own: every consumer process publishes one timing row per
change event on the timings topic, and dead letters go to the DLQ topic. Both are read
from their current end, so the view shows what happens from now on, whoever makes the
load (`event-processor load --no-dashboard` in another terminal, or your own writes).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console

from event_processor.dashboard.live import DashboardRunner
from event_processor.errors import StackError
from event_processor.metrics.live import LiveMetrics
from event_processor.settings import Settings


class _DeadLetterCounter:
    """Counts new messages on the DLQ topic (from its end when attached)."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer: Any = KafkaConsumer(
            bootstrap_servers=settings.kafka_servers(), group_id=None, enable_auto_commit=False
        )
        partitions = self.consumer.partitions_for_topic(settings.dlq_topic) or set()
        self.parts = [TopicPartition(settings.dlq_topic, p) for p in sorted(partitions)]
        if self.parts:
            self.consumer.assign(self.parts)
            self.consumer.seek_to_end(*self.parts)

    def poll(self) -> int:
        if not self.parts:
            return 0
        batches = self.consumer.poll(timeout_ms=0, max_records=10_000)
        return sum(len(messages) for messages in batches.values())

    def close(self) -> None:
        self.consumer.close()


def watch(
    settings: Settings,
    slo_targets: dict[str, float],
    *,
    duration_s: float | None = None,
    console: Console | None = None,
    refresh_per_second: float = 4,
) -> LiveMetrics:
    """Show the dashboard until ``duration_s`` passed (None: until Ctrl-C)."""
    from kafka.errors import KafkaError

    from event_processor.consumer.timings import TimingCollector

    try:
        collector = TimingCollector(settings.kafka_servers(), settings.timings_topic)
        dead_letters = _DeadLetterCounter(settings)
    except KafkaError as exc:
        raise StackError(
            "dashboard",
            f"cannot read the timings topic from Kafka at {settings.kafka_servers()}: {exc}",
            "run `event-processor stack up` or set EP_KAFKA_BOOTSTRAP",
        ) from None
    collector.seek(collector.mark_end())
    metrics = LiveMetrics(scenario="live (attached)", slo_targets=slo_targets)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        with DashboardRunner(metrics, console=console, refresh_per_second=refresh_per_second):
            while deadline is None or time.monotonic() < deadline:
                metrics.record_many(collector.poll(100))
                if lettered := dead_letters.poll():
                    metrics.add_dead_lettered(lettered)
    except KeyboardInterrupt:
        pass
    finally:
        collector.close()
        dead_letters.close()
    return metrics


def add_subcommand(sub: Any) -> None:
    dashboard = sub.add_parser(
        "dashboard",
        help="show the live dashboard for whatever load the running pipeline carries",
        description="Attach to the running pipeline (its timings and dead-letter topics) "
        "and show throughput, per-stage latency, recent events and dead letters live, "
        "coloured against the default SLOs of scenarios.toml. Without a terminal it "
        "prints one compact line every 5 s. Ctrl-C ends it.",
    )
    dashboard.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)"
    )
    dashboard.add_argument(
        "--refresh", type=float, default=4, metavar="HZ", help="redraws per second (default 4)"
    )
    dashboard.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from event_processor.dashboard.views import compact_line
    from event_processor.errors import ConfigError
    from event_processor.metrics.scenarios import default_slos
    from event_processor.settings import get_settings

    if args.duration is not None and args.duration <= 0:
        raise ConfigError("dashboard", "--duration must be > 0 seconds", "e.g. --duration 30")
    if args.refresh <= 0:
        raise ConfigError("dashboard", "--refresh must be > 0 per second", "e.g. --refresh 4")
    console = Console(stderr=True)
    metrics = watch(
        get_settings(),
        default_slos(),
        duration_s=args.duration,
        console=console,
        refresh_per_second=args.refresh,
    )
    print(compact_line(metrics.snapshot()))
    return 0
