"""The race's pure parts: sink configs, figures, spreads, paired ratios, integrity, the
report pieces, CLI input."""

from __future__ import annotations

from io import StringIO

import pytest
from rich.console import Console

from event_processor.cli import build_parser
from event_processor.cli.load import check_race_args
from event_processor.errors import ConfigError
from event_processor.race.result import (
    RaceBrokenError,
    assemble,
    drain_rate,
    integrity,
    latency_samples_ms,
    paired_ratios,
    race_table,
    side_result,
    spread,
    target_met,
)
from event_processor.race.run import payload_for, race_topic, sink_group
from event_processor.race.sinks import (
    DEBEZIUM,
    MONGO_CONNECTOR,
    MONGO_CONNECTOR_CDC,
    OURS,
    QUIX,
    SINKS,
    connector_config,
    parse_sinks,
    redacted_config,
)
from event_processor.report.html import race_fragment, render_standalone
from event_processor.report.schema import (
    RaceLeg,
    base_configuration,
    build_document,
    parse_document,
)
from event_processor.settings import Settings
from event_processor.verify.compare import SKIPPED_TABLES

pytestmark = pytest.mark.unit

T = 1_700_000_000_000_000


def _settings() -> Settings:
    return Settings(mongo_port=57999, topic_prefix="ep")


def test_debeziums_sink_config_on_the_race_topic() -> None:
    s = _settings()
    cfg = connector_config(SINKS[DEBEZIUM], s, race_topic(s), 100)
    assert cfg["connector.class"] == "io.debezium.connector.mongodb.MongoDbSinkConnector"
    assert cfg["topics"] == "ep.public.race_events"
    assert cfg["tasks.max"] == "1"
    assert cfg["sink.database"] == "ep_race_debezium"
    assert cfg["mongodb.connection.string"] == s.mongodb_uri()
    assert cfg["collection.name.format"] == "race_events"
    assert cfg["batch.size"] == "100"
    # the source writes values and keys without schemas: the sink must read them alike
    assert cfg["value.converter.schemas.enable"] == "false"
    assert cfg["key.converter.schemas.enable"] == "false"
    assert all(isinstance(v, str) for v in cfg.values())
    assert "mongodb.connection.string" not in redacted_config(cfg)
    assert sink_group(SINKS[DEBEZIUM]) == "connect-ep-race-debezium"


def test_mongodb_connector_variants() -> None:
    s = _settings()
    scalar = connector_config(SINKS[MONGO_CONNECTOR], s, "t", 50, "race_backlog")
    assert scalar["connector.class"] == "com.mongodb.kafka.connect.MongoSinkConnector"
    assert scalar["collection"] == "race_backlog" and scalar["max.batch.size"] == "50"
    # the row out of Debezium's envelope, the key's id as a scalar _id, deletes on null
    assert scalar["transforms.row.field"] == "after"
    assert scalar["transforms.keyToId.renames"] == "id:_id"
    assert scalar["document.id.strategy"].endswith("ProvidedInKeyStrategy")
    assert scalar["delete.on.null.values"] == "true"
    cdc = connector_config(SINKS[MONGO_CONNECTOR_CDC], s, "t", 50)
    assert cdc["change.data.capture.handler"].endswith("rdbms.postgres.PostgresHandler")
    assert "transforms" not in cdc
    assert "connection.uri" not in redacted_config(cdc)
    with pytest.raises(ValueError):
        connector_config(SINKS[OURS], s, "t", 50)


def test_document_ids_as_each_sink_writes_them() -> None:
    assert SINKS[OURS].encode_id(7) == "7" and SINKS[OURS].decode_id("7") == 7
    assert SINKS[QUIX].encode_id(7) == "7"
    assert SINKS[MONGO_CONNECTOR].encode_id(7) == 7 and SINKS[MONGO_CONNECTOR].decode_id(7) == 7
    for name in (DEBEZIUM, MONGO_CONNECTOR_CDC):
        assert SINKS[name].encode_id(7) == {"id": 7} and SINKS[name].decode_id({"id": 7}) == 7
    assert len({s.database for s in SINKS.values()}) == len(SINKS)
    assert len(payload_for(12345)) == 64 and payload_for(1) != payload_for(2)


def test_parse_sinks_puts_ours_first_and_rejects_unknown_names() -> None:
    assert [s.name for s in parse_sinks("quix,debezium")] == [OURS, QUIX, DEBEZIUM]
    assert [s.name for s in parse_sinks("ours,mongo-connector")] == [OURS, MONGO_CONNECTOR]
    with pytest.raises(ConfigError, match=r"unknown sink.*kafka-sink"):
        parse_sinks("ours,kafka-sink")
    with pytest.raises(ConfigError, match="named twice"):
        parse_sinks("quix,quix")


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


def test_drain_rate_counts_from_the_sinks_start_or_its_first_document() -> None:
    # 10 rows: the first visible 0.1 s after the sink was seen assigned, the last 0.5 s
    visible = {i: T + 100_000 + (i - 1) * 400_000 // 9 for i in range(1, 11)}
    assert drain_rate(visible, start_us=T) == pytest.approx(20.0)
    # a row visible before the sink was seen assigned: the window starts there
    assert drain_rate(visible, start_us=T + 200_000) == pytest.approx(10 / 0.4)
    assert drain_rate({}, start_us=T) is None


def test_integrity_names_missing_extra_mismatched_and_duplicates() -> None:
    rows = {1: "a", 2: "b", 3: "c"}
    exact = integrity(rows, [(1, "a"), (2, "b"), (3, "c")])
    assert exact.exact and exact.documents == 3
    bad = integrity(rows, [(1, "a"), (1, "a"), (2, "x"), (9, "z")])
    assert not bad.exact
    assert (bad.missing, bad.extra, bad.mismatched, bad.documents) == (1, 2, 1, 4)


def _side(ms: float, drain: float | None = None, cpu: float | None = None) -> dict:
    ids = [1, 2]
    t0 = {1: T, 2: T}
    side = side_result("x", "db", ids, t0, {i: T + int(ms * 1000) for i in ids})
    side.drain_rows_per_s, side.cpu_s_per_1000_rows = drain, cpu
    side.integrity = integrity({1: "p", 2: "p"}, [(1, "p"), (2, "p")])
    return {"side": side}


def _legs(ours_ms: list[float], theirs_ms: list[float]) -> list[RaceLeg]:
    legs = []
    for r, (a, b) in enumerate(zip(ours_ms, theirs_ms, strict=True), start=1):
        legs.append(
            RaceLeg(
                mode="rate",
                repeat=r,
                events=2,
                sides={OURS: _side(a)["side"], DEBEZIUM: _side(b)["side"]},
            )
        )
        legs.append(
            RaceLeg(
                mode="drain",
                repeat=r,
                events=2,
                sides={
                    OURS: _side(a, drain=200.0, cpu=0.5)["side"],
                    DEBEZIUM: _side(b, drain=100.0, cpu=1.0)["side"],
                },
            )
        )
    return legs  # fmt: skip


def test_ratios_are_paired_repeat_by_repeat_with_their_spread() -> None:
    legs = _legs([10.0, 20.0, 30.0], [40.0, 40.0, 40.0])
    r = paired_ratios(legs, DEBEZIUM)
    assert r["p50"] is not None
    assert (r["p50"].median, r["p50"].min, r["p50"].max, r["p50"].n) == (0.5, 0.25, 0.75, 3)
    assert r["throughput"] is not None and r["throughput"].median == 2.0
    assert r["cpu"] is not None and r["cpu"].median == 0.5
    assert target_met("throughput", r["throughput"]) is True
    assert target_met("p99", r["p99"]) is True
    assert target_met("cpu", spread([1.2])) is False
    assert target_met("p99", None) is None


def _race() -> object:
    legs = _legs([3.0], [9.0])
    return assemble(events=2, rate=100.0, repeats=1, timeout_s=5.0, table="race_events",
                    backlog_table="race_backlog", topic="ep.public.race_events", probe="probe",
                    poll_interval_ms=2.0, legs=legs, configs={DEBEZIUM: {"batch.size": "100"}},
                    processes={OURS: "its own process"}, notes=["a note"])  # fmt: skip


def test_assemble_summarizes_each_sink_and_passes_on_ours() -> None:
    race = _race()
    assert race.passed  # type: ignore[attr-defined]
    ours = race.sinks[OURS]  # type: ignore[attr-defined]
    assert ours.complete and not ours.integrity_problems and ours.p50_ms.median == 3.0
    assert race.sinks[DEBEZIUM].config == {"batch.size": "100"}  # type: ignore[attr-defined]
    assert race.targets[DEBEZIUM]["p99"] is True  # type: ignore[attr-defined]
    # ours losing a row fails the race; a peer losing one is reported, not failed
    legs = _legs([3.0], [9.0])
    legs[0].sides[OURS].integrity = integrity({1: "p", 2: "p"}, [(1, "p")])
    broken = assemble(events=2, rate=1.0, repeats=1, timeout_s=1.0, table="t",
                      backlog_table="b", topic="x", probe="p", poll_interval_ms=1.0,
                      legs=legs, configs={}, processes={})  # fmt: skip
    assert not broken.passed
    assert broken.sinks[OURS].integrity_problems == ["rate #1: 1/2 documents: 1 missing"]
    assert latency_samples_ms([1], {1: T}, {1: T + 5000}) == [5.0]


def test_race_round_trips_through_the_json_document_and_renders() -> None:
    race = _race()
    doc = build_document([], base_configuration(), race=race)  # type: ignore[arg-type]
    again = parse_document(doc.model_dump_json())
    assert again.race == race
    html = render_standalone(again, {"race": {"curve": b"\x89PNG\r\n\x1a\nxx"}})
    assert "Debezium MongoDB sink" in html and "ours / Debezium MongoDB sink" in html
    assert "0.33x" in html  # p50 3 ms / 9 ms
    assert "data:image/png;base64," in html
    assert "a note" in race_fragment(race)  # type: ignore[arg-type]
    assert "batch.size" in html and "drain #1" in html


def test_race_table_shows_every_sink_and_the_ratio() -> None:
    console = Console(file=StringIO(), width=200)
    console.print(race_table(_race()))  # type: ignore[arg-type]
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "event-processor consumer" in text and "Debezium MongoDB sink" in text
    assert "0.33x" in text and "2.00x" in text  # latency and drain ratios


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--events", "0"], "--events must be at least 1"),
        (["--rate", "0"], "--rate must be above 0"),
        (["--timeout", "-1"], "--timeout must be above 0"),
        (["--poll-ms", "0"], "--poll-ms must be in"),
        (["--sink-batch-size", "500"], "--sink-batch-size must be in 1..200"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--sinks", "ours,nope"], "unknown sink"),
    ],
)
def test_bad_race_input_is_a_config_error(argv: list[str], message: str) -> None:
    args = build_parser().parse_args(["race", *argv])
    with pytest.raises(ConfigError, match=message):
        check_race_args(args)


def test_race_defaults_parse() -> None:
    args = build_parser().parse_args(["race"])
    check_race_args(args)
    assert (args.events, args.rate, args.timeout, args.repeats) == (2000, 500.0, 60.0, 3)
    assert [s.name for s in parse_sinks(args.sinks)] == list(SINKS)


def test_verify_skips_the_race_tables_with_a_reason() -> None:
    assert "race_events" in SKIPPED_TABLES and "race_backlog" in SKIPPED_TABLES
    assert "race" in SKIPPED_TABLES["race_events"]
