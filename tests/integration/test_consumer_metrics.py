"""The consumer's Prometheus endpoint, and the measured cost of its own instrumentation."""

from __future__ import annotations

import re
import socket
import urllib.request
import uuid
from typing import Any

import pytest

from event_processor.pytest_plugin import group_lag, wait_until
from event_processor.settings import Settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


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
    port = _free_port()
    group = f"metrics-{uuid.uuid4().hex[:6]}"
    proc = start_consumer("metrics", group=group, metrics_port=port, at_end=False)
    url = f"http://127.0.0.1:{port}/metrics"

    def applied() -> float:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return 0.0
        return _metric(text, "ep_events_applied_total")

    assert wait_until(lambda: applied() >= rows, 120, 0.5), f"applied {applied()} of {rows}"
    assert wait_until(lambda: group_lag(settings, group) == 0, 60, 0.5)
    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    assert proc.alive()
    for name in ("ep_stage_latency_seconds_bucket", "ep_consumer_lag", "ep_dead_lettered_total",
                 "ep_errors_total"):  # fmt: skip
        assert re.search(rf"^{name}", text, re.M), f"{name} missing from /metrics"
    instrumentation = _metric(text, "ep_instrumentation_seconds_total")
    batches = _metric(text, "ep_batch_processing_seconds_total")
    assert batches > 0
    ratio = instrumentation / batches
    print(f"instrumentation cost: {ratio:.2%} of batch processing time ({rows} row changes)")
    assert ratio < 0.05, f"instrumentation costs {ratio:.1%} of processing (target < 5 %)"
