"""The race's pure parts: connector config, figures, ratios, the report pieces, CLI input."""

from __future__ import annotations

from io import StringIO

import pytest
from rich.console import Console

from event_processor.cli import build_parser
from event_processor.cli.load import check_race_args
from event_processor.errors import ConfigError
from event_processor.race.result import (
    DATABASES,
    OURS,
    THEIRS,
    RaceBrokenError,
    assemble,
    latency_samples_ms,
    race_table,
    race_topic,
    ratios,
    redacted_config,
    side_result,
    sink_connector_config,
    sink_group,
)
from event_processor.race.run import decode_id, encode_id, payload_for
from event_processor.report.html import race_fragment, render_standalone
from event_processor.report.schema import base_configuration, build_document, parse_document
from event_processor.settings import Settings
from event_processor.verify.compare import SKIPPED_TABLES

pytestmark = pytest.mark.unit

T = 1_700_000_000_000_000


def _settings() -> Settings:
    return Settings(mongo_port=57999, topic_prefix="ep")


def test_sink_config_is_debeziums_mongodb_sink_on_the_race_topic() -> None:
    s = _settings()
    cfg = sink_connector_config(s, race_topic(s), "ep_race_debezium", 100)
    assert cfg["connector.class"] == "io.debezium.connector.mongodb.MongoDbSinkConnector"
    assert cfg["topics"] == "ep.public.race_events"
    assert cfg["tasks.max"] == "1"
    assert cfg["sink.database"] == "ep_race_debezium"
    assert cfg["mongodb.connection.string"] == s.mongodb_uri()
    assert cfg["collection.name.format"] == "race_events"
    assert cfg["batch.size"] == "100"
    # the source writes value schemas, keys without: the sink must read them alike
    assert cfg["value.converter.schemas.enable"] == "false"  # types from the catalogue
    assert cfg["key.converter.schemas.enable"] == "false"
    assert all(isinstance(v, str) for v in cfg.values())
    assert "mongodb.connection.string" not in redacted_config(cfg)
    assert sink_group("x") == "connect-x"


def test_side_result_latency_and_throughput() -> None:
    ids = [1, 2, 3, 4]
    t0 = {i: T + i * 1000 for i in ids}  # commits 1 ms apart
    visible = {i: t0[i] + 10_000 * i for i in ids}  # 10, 20, 30, 40 ms
    side = side_result("x", "db", ids, t0, visible)
    assert side.visible == 4
    assert side.latency_ms.count == 4
    assert side.latency_ms.p50 == 20.0  # nearest rank: 2nd of 4
    assert side.latency_ms.max == 40.0
    # span: first commit (T+1 ms) to last visible (T+4 ms+40 ms) = 43 ms
    assert side.duration_s == pytest.approx(0.043)
    assert side.throughput_eps == pytest.approx(4 / 0.043, rel=1e-3)


def test_side_result_counts_only_rows_seen_and_rejects_negative_latency() -> None:
    ids = [1, 2, 3]
    t0 = {i: T for i in ids}
    side = side_result("x", "db", ids, t0, {1: T + 5000})
    assert side.visible == 1 and side.latency_ms.count == 1
    empty = side_result("x", "db", ids, t0, {})
    assert empty.visible == 0 and empty.throughput_eps == 0.0
    with pytest.raises(RaceBrokenError, match="before their commit"):
        side_result("x", "db", ids, t0, {1: T - 1})


def test_ratios_are_ours_over_theirs_and_none_without_a_denominator() -> None:
    ids = [1, 2]
    t0 = {1: T, 2: T}
    fast = side_result("ours", "a", ids, t0, {1: T + 10_000, 2: T + 10_000})
    slow = side_result("theirs", "b", ids, t0, {1: T + 40_000, 2: T + 40_000})
    r = ratios(fast, slow)
    assert r["p50"] == 0.25 and r["p99"] == 0.25
    assert r["throughput"] == 4.0
    nothing = side_result("theirs", "b", ids, t0, {})
    assert ratios(fast, nothing)["p50"] is None
    assert ratios(fast, nothing)["throughput"] is None


def test_assemble_passes_only_when_every_row_is_visible_in_both() -> None:
    ids = [1, 2]
    t0 = {1: T, 2: T + 1000}
    both = {OURS: {1: T + 5000, 2: T + 6000}, THEIRS: {1: T + 9000, 2: T + 9000}}
    kwargs = dict(events=2, rate=10.0, timeout_s=5.0, topic="t", probe="p",
                  poll_interval_ms=2.0, ids=ids, t0_us=t0)  # fmt: skip
    ok = assemble(visible_us=both, sink_config={"batch.size": "100"}, **kwargs)  # type: ignore[arg-type]
    assert ok.passed
    assert ok.sides[OURS].database == DATABASES[OURS]
    assert ok.sink_config == {"batch.size": "100"}
    partial = {OURS: both[OURS], THEIRS: {1: T + 9000}}
    assert not assemble(visible_us=partial, **kwargs).passed  # type: ignore[arg-type]
    no_t0 = dict(kwargs, t0_us={1: T})
    assert not assemble(visible_us=both, **no_t0).passed  # type: ignore[arg-type]
    assert latency_samples_ms(ids, t0, both[OURS]) == [5.0, 5.0]


def _race_doc() -> tuple[object, object]:
    ids = [1, 2, 3]
    t0 = {i: T + i for i in ids}
    vis = {OURS: {i: t0[i] + 3000 for i in ids}, THEIRS: {i: t0[i] + 9000 for i in ids}}
    race = assemble(events=3, rate=100.0, timeout_s=5.0, topic="ep.public.race_events",
                    probe="probe", poll_interval_ms=2.0, ids=ids, t0_us=t0, visible_us=vis,
                    notes=["a note"])  # fmt: skip
    doc = build_document([], base_configuration(), race=race)
    return race, doc


def test_race_round_trips_through_the_json_document_and_renders() -> None:
    race, doc = _race_doc()
    again = parse_document(doc.model_dump_json())  # type: ignore[attr-defined]
    assert again.race == race
    assert again.passed
    html = render_standalone(again, {"race": {"curve": b"\x89PNG\r\n\x1a\nxx"}})
    assert "Debezium MongoDB sink" in html and "ratio ours/theirs" in html
    assert "0.33x" in html  # p50 3 ms / 9 ms
    assert "data:image/png;base64," in html
    assert "a note" in race_fragment(race)  # type: ignore[arg-type]


def test_race_table_shows_both_sinks_and_the_ratio() -> None:
    race, _ = _race_doc()
    console = Console(file=StringIO(), width=160)
    console.print(race_table(race))  # type: ignore[arg-type]
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "event-processor consumer" in text and "Debezium MongoDB sink" in text
    assert "3/3" in text and "0.33x" in text


def test_document_ids_as_each_sink_writes_them() -> None:
    assert encode_id(OURS, 7) == "7" and decode_id(OURS, "7") == 7
    assert encode_id(THEIRS, 7) == {"id": 7} and decode_id(THEIRS, {"id": 7}) == 7
    assert len(payload_for(12345)) == 64 and payload_for(1) != payload_for(2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--events", "0"], "--events must be at least 1"),
        (["--rate", "0"], "--rate must be above 0"),
        (["--timeout", "-1"], "--timeout must be above 0"),
        (["--poll-ms", "0"], "--poll-ms must be in"),
        (["--sink-batch-size", "500"], "--sink-batch-size must be in 1..200"),
    ],
)
def test_bad_race_input_is_a_config_error(argv: list[str], message: str) -> None:
    args = build_parser().parse_args(["race", *argv])
    with pytest.raises(ConfigError, match=message):
        check_race_args(args)


def test_race_defaults_parse() -> None:
    args = build_parser().parse_args(["race"])
    check_race_args(args)
    assert (args.events, args.rate, args.timeout) == (2000, 500.0, 60.0)


def test_verify_skips_the_race_table_with_a_reason() -> None:
    assert "race_events" in SKIPPED_TABLES
    assert "race" in SKIPPED_TABLES["race_events"]
