"""The public test helpers that need no stack: Prometheus parsing, waiting, ports."""

from __future__ import annotations

import socket

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from event_processor.testing import free_port, parse_metrics, wait_until

pytestmark = pytest.mark.unit


def test_parse_metrics_sums_labelled_samples_of_a_real_exposition() -> None:
    registry = CollectorRegistry()
    applied = Counter("ep_events_applied", "rows", ["table", "op"], registry=registry)
    applied.labels("orders", "c").inc(3)
    applied.labels("orders", "u").inc(2)
    applied.labels("a table", "c").inc(5)  # a space inside a label value
    Gauge("ep_consumer_lag", "lag", registry=registry).set(7)
    stages = Histogram("ep_stage", "s", ["stage"], buckets=(0.01, 0.1), registry=registry)
    stages.labels("capture").observe(0.05)
    stages.labels("kafka").observe(0.5)

    values = parse_metrics(generate_latest(registry).decode())

    assert values["ep_events_applied_total"] == 10
    assert values["ep_consumer_lag"] == 7
    assert values["ep_stage_count"] == 2
    assert values["ep_stage_sum"] == pytest.approx(0.55)
    assert values["ep_stage_bucket"] == (0 + 1 + 1) + (0 + 0 + 1)  # cumulative: le=0.01, 0.1, +Inf


def test_wait_until_polls_until_the_condition_holds_or_times_out() -> None:
    calls = iter([False, False, True])
    assert wait_until(lambda: next(calls), timeout_s=5, interval_s=0.001)
    assert not wait_until(lambda: False, timeout_s=0.02, interval_s=0.005)


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_scrape_info_reads_an_info_metric_from_a_real_endpoint() -> None:
    from prometheus_client import Info, start_http_server

    from event_processor.testing import scrape_info

    registry = CollectorRegistry()
    Info("ep_consumer_settings", "s", registry=registry).info({"mongo_write_concurrency": "2"})
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        assert scrape_info(port, "ep_consumer_settings") == {"mongo_write_concurrency": "2"}
        assert scrape_info(port, "ep_missing") == {}
    finally:
        server.shutdown()
        thread.join(5)
