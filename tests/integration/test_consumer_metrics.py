"""The consumer's Prometheus endpoint, and the measured cost of its own instrumentation."""

from __future__ import annotations

import re
import urllib.request
import uuid
from typing import Any

import pytest

from event_processor.settings import Settings
from event_processor.testing import free_port, group_lag, parse_metrics, scrape_metrics, wait_until

pytestmark = pytest.mark.integration


def test_metrics_endpoint_and_instrumentation_cost(
    clean_pipeline: Settings, start_consumer: Any
) -> None:
    from event_processor.source.generator import run_load, seed_catalogue
    from event_processor.source.workload import WorkloadModel

    settings = clean_pipeline
    # A backlog of the benchmark workload (the domain's business events), consumed in
    # large batches: the harness's own cost is measured against real processing.
    model = WorkloadModel(seed=11)
    seed_catalogue(settings.postgres_dsn(), model)
    sends = run_load(settings.postgres_dsn(), model.plan(2000), rate=5000)
    rows = sum(s.rows for s in sends) + len(model.catalogue)
    port = free_port()
    group = f"metrics-{uuid.uuid4().hex[:6]}"
    proc = start_consumer("metrics", group=group, metrics_port=port, at_end=False)
    url = f"http://127.0.0.1:{port}/metrics"

    def applied() -> float:
        return scrape_metrics(port, timeout_s=2).get("ep_events_applied_total", 0.0)

    assert wait_until(lambda: applied() >= rows, 120, 0.5), f"applied {applied()} of {rows}"
    assert wait_until(lambda: group_lag(settings, group) == 0, 60, 0.5)
    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    assert proc.alive()
    for name in ("ep_stage_latency_seconds_bucket", "ep_consumer_lag", "ep_dead_lettered_total",
                 "ep_errors_total"):  # fmt: skip
        assert re.search(rf"^{name}", text, re.M), f"{name} missing from /metrics"
    values = parse_metrics(text)
    instrumentation = values["ep_instrumentation_seconds_total"]
    batches = values["ep_batch_processing_seconds_total"]
    assert batches > 0
    ratio = instrumentation / batches
    print(f"instrumentation cost: {ratio:.2%} of batch processing time ({rows} row changes)")
    assert ratio < 0.05, f"instrumentation costs {ratio:.1%} of processing (target < 5 %)"


def test_the_consumer_reports_the_settings_it_runs_with(ep_stack: Settings, tmp_path: Any) -> None:
    """What a report records is what the consumer's clients were built with, even when
    its environment differs from the harness's (here: three write connections)."""
    from event_processor.testing import ConsumerProcess

    assert ep_stack.mongo_write_concurrency != 3
    proc = ConsumerProcess(
        "settings",
        tmp_path / "consumer-settings.log",
        group=f"settings-{uuid.uuid4().hex[:6]}",
        metrics_port=free_port(),
        env={"EP_MONGO_WRITE_CONCURRENCY": "3", "EP_CONSUMER_FETCH_MAX_WAIT_MS": "50"},
    )
    try:
        assert wait_until(lambda: bool(proc.effective_settings()), 60, 0.25), proc.last_lines()
        reported = proc.effective_settings()
    finally:
        proc.stop()
    assert reported["mongo_write_concurrency"] == "3"
    assert reported["consumer_fetch_max_wait_ms"] == "50"
    assert reported["mongo_ops_per_command"] == str(ep_stack.mongo_ops_per_command)
