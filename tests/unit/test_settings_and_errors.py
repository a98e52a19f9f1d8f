"""Configuration parsing, the stack's generated configs, and one-line user errors."""

from __future__ import annotations

import socket

import pytest

from event_processor.cli import main
from event_processor.errors import ConfigError, StackError
from event_processor.settings import Settings, get_settings
from event_processor.stack import connect, kafka, process
from event_processor.stack.manager import redact

pytestmark = pytest.mark.unit


def test_defaults_are_local_loopback() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert not (s.pg_external or s.kafka_external or s.connect_external or s.mongo_external)
    assert s.postgres_dsn().startswith("postgresql://postgres@127.0.0.1:")
    assert s.kafka_servers() == f"127.0.0.1:{s.kafka_port}"
    assert s.mongodb_uri().startswith("mongodb://127.0.0.1:")


def test_environment_points_at_an_existing_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EP_PG_DSN", "postgresql://app:s3cret@db.internal:5432/shop")
    monkeypatch.setenv("EP_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("EP_MONGO_URI", "mongodb+srv://u:p@cluster0.example.net/")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.pg_external and s.kafka_external and s.mongo_external and not s.connect_external
    assert s.kafka_servers() == "k1:9092,k2:9092"
    assert "s3cret" not in repr(s)  # secrets are SecretStr
    assert redact(s.postgres_dsn()) == "postgresql://app:***@db.internal:5432/shop"


def test_a_database_named_in_the_mongo_uri_holds_the_read_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EP_MONGO_DATABASE", raising=False)
    uri = "mongodb://app:p%40ss@m1:27017,m2:27017/shop%2Drm?replicaSet=rs0"
    monkeypatch.setenv("EP_MONGO_URI", uri)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.mongo_database == "shop-rm"
    assert s.mongodb_uri() == uri  # the driver still gets the URI as given
    monkeypatch.setenv("EP_MONGO_DATABASE", "chosen")  # an explicit setting wins
    assert Settings(_env_file=None).mongo_database == "chosen"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "uri",
    [
        None,
        "mongodb+srv://u:p@cluster0.example.net/",
        "mongodb://127.0.0.1:57017/?directConnection=true",
        "mongodb://127.0.0.1:57017",
    ],
)
def test_a_mongo_uri_without_a_database_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch, uri: str | None
) -> None:
    monkeypatch.delenv("EP_MONGO_DATABASE", raising=False)
    if uri is None:
        monkeypatch.delenv("EP_MONGO_URI", raising=False)
    else:
        monkeypatch.setenv("EP_MONGO_URI", uri)
    assert Settings(_env_file=None).mongo_database == "read_model"  # type: ignore[call-arg]


def test_bad_value_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EP_PG_PORT", "not-a-port")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as err:
            get_settings()
    finally:
        get_settings.cache_clear()
    line = err.value.one_line()
    assert "\n" not in line and "EP_PG_PORT" in line and "fix:" in line


def test_port_in_use_names_component_and_fix() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(StackError) as err:
            process.ensure_port_free("kafka", port, "EP_KAFKA_PORT", grace_s=0.5)
    text = err.value.one_line()
    assert text.startswith("kafka:") and str(port) in text and "EP_KAFKA_PORT" in text


def test_kafka_uses_log_append_time_and_loopback() -> None:
    props = kafka.server_properties(Settings(_env_file=None))  # type: ignore[call-arg]
    assert "log.message.timestamp.type=LogAppendTime" in props
    listeners = next(line for line in props.splitlines() if line.startswith("listeners="))
    assert "0.0.0.0" not in listeners and listeners.count("127.0.0.1") == 2


def test_connector_is_tuned_for_latency_and_routes_the_order_aggregate() -> None:
    s = Settings(_env_file=None, poll_interval_ms=7)  # type: ignore[call-arg]
    cfg = connect.connector_config(s)
    assert cfg["plugin.name"] == "pgoutput"
    assert cfg["poll.interval.ms"] == "7"
    assert cfg["publication.autocreate.mode"] == "all_tables"
    assert cfg["value.converter.schemas.enable"] == "false"  # types from the catalogue
    assert cfg["key.converter.schemas.enable"] == "false"
    assert cfg["transforms.aggregate.topic.replacement"] == "ep.aggregate.orders"
    assert "public.order_items:order_id" in cfg["message.key.columns"]


def test_wrong_option_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["stack", "sideways"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice" in err and "--help" in err


def test_unreachable_endpoint_is_reported_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 1: `stack up` against external endpoints must fail cleanly.
    monkeypatch.setenv("EP_PG_DSN", "postgresql://postgres@127.0.0.1:1/shop")
    get_settings.cache_clear()
    try:
        code = main(["stack", "up"])
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err and "postgres" in err and "EP_" in err


def test_second_consumer_on_a_taken_metrics_port_names_the_port_and_the_variable() -> None:
    from event_processor.consumer.telemetry import ConsumerTelemetry

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(StackError) as err:
            ConsumerTelemetry(port)
    text = err.value.one_line()
    assert text.startswith("consumer:") and f"127.0.0.1:{port}" in text
    assert "EP_METRICS_PORT" in text and "--metrics-port 0" in text
