"""The black-box mode measures a pipeline that is not ours: MongoDB's Kafka sink
connector (scalar ``_id``) stands in for the user's own, on the race's Connect worker.

`event-processor load --sink external` must time it from commit to document visible with
its verdict and integrity check and never start our consumer; `verify --sink external`
must compare by the same mapping and find a document the test corrupts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from event_processor.perf.harness import ensure_topics
from event_processor.race import worker
from event_processor.race.external import Mapping, prepare_table
from event_processor.race.run import sink_group
from event_processor.race.sinks import MONGO_CONNECTOR, SINKS, connector_config
from event_processor.settings import PROJECT_ROOT, Settings
from event_processor.stack import connect
from event_processor.testing import commit_at_end, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def users_pipeline(ep_stack: Settings, mongo_db: Any) -> Iterator[dict[str, str]]:
    """A benchmark table, and MongoDB's sink connector writing it to a database of the
    "user's"; yields the EP_EXTERNAL_* settings that describe it."""
    hexa = uuid.uuid4().hex[:6]
    table, database = f"ep_blackbox_{hexa}", f"ep_user_{hexa}"
    m = Mapping(
        "public", table, database, table, "number", f"{ep_stack.topic_prefix}.public.{table}"
    )
    prepare_table(ep_stack, m)
    ensure_topics(ep_stack, [m.topic])
    sink = dataclasses.replace(SINKS[MONGO_CONNECTOR], db=database)
    config = connector_config(sink, ep_stack, m.topic, ep_stack.race_sink_batch_size, table)
    worker.start(ep_stack)
    on_worker = worker.worker_settings(ep_stack)
    commit_at_end(ep_stack, sink_group(sink), [m.topic])
    connect.put_connector(on_worker, sink.connector_name, config, "test")
    client = mongo_db.client
    try:
        yield {"EP_EXTERNAL_TABLE": f"public.{table}", "EP_EXTERNAL_DATABASE": database,
               "EP_EXTERNAL_ID": "auto", "table": table}  # fmt: skip
    finally:
        connect.delete_connector(on_worker, sink.connector_name)
        worker.stop(ep_stack)
        client.drop_database(database)
        import psycopg2

        conn = psycopg2.connect(ep_stack.postgres_dsn())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS public.{table}")
        conn.close()


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **{k: v for k, v in env.items() if k.startswith("EP_")}}
    return subprocess.run([sys.executable, "-m", "event_processor.cli", *argv], env=full,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip


def _consumers() -> set[int]:
    out = set()
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "event_processor.cli consume" in cmd or "event-processor consume" in cmd:
            out.add(p.pid)
    return out


def test_load_measures_a_pipeline_that_is_not_ours(
    ep_stack: Settings, mongo_db: Any, users_pipeline: dict[str, str], tmp_path: Path
) -> None:
    before = _consumers()
    run = _cli(users_pipeline, "load", "--sink", "external", "--scenario", "warmup",
               "--json", "--reports", str(tmp_path))  # fmt: skip
    assert run.returncode in (0, 1), run.stdout[-2000:] + run.stderr[-2000:]
    assert _consumers() <= before, "the black-box mode started a consumer"
    doc = json.loads(run.stdout)
    race = doc["race"]
    side = race["legs"][0]["sides"]["external"]
    assert side["visible"] == race["events"] == 10
    lat = side["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert side["integrity"] == {"expected": 10, "documents": 10, "missing": 0, "extra": 0,
                                 "mismatched": 0}  # fmt: skip
    assert race["probe"].startswith("black box: source.ts_us on ")  # T0 from Debezium
    # The verdict: the warmup scenario's gates, each named; the exit code follows them
    # (the stand-in's latency is not ours to promise).
    gates = [n for n in race["notes"] if n.startswith("warmup: ")]
    names = ("e2e p50", "e2e p95", "e2e p99", "success", "integrity")
    assert all(any(name in g for g in gates) for name in names), gates
    assert any("integrity" in g and g.endswith("PASSED") for g in gates), gates
    all_passed = all(g.endswith("PASSED") for g in gates)
    assert race["passed"] is all_passed
    assert run.returncode == (0 if all_passed else 1)
    assert "not measured in this mode" in " ".join(race["notes"])
    assert (tmp_path / "latest.json").exists()


def test_verify_compares_by_the_same_mapping_and_finds_a_wrong_document(
    ep_stack: Settings, pg_conn: Any, mongo_db: Any, users_pipeline: dict[str, str]
) -> None:
    table, database = users_pipeline["table"], users_pipeline["EP_EXTERNAL_DATABASE"]
    with pg_conn.cursor() as cur:
        cur.execute(f"INSERT INTO public.{table} (id, payload) "
                    "SELECT g, 'p' || g FROM generate_series(1, 20) g")  # fmt: skip
    coll = mongo_db.client[database][table]
    assert wait_until(lambda: coll.count_documents({}) == 20, 60), coll.count_documents({})
    ok = _cli(users_pipeline, "verify", "--sink", "external")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "exact (20 documents)" in ok.stdout
    coll.update_one({"_id": 7}, {"$set": {"payload": "tampered"}})
    bad = _cli(users_pipeline, "verify", "--sink", "external")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "1 mismatched" in bad.stdout
