"""Workloads our generator never writes, as a user's own database would: bulk loads
(``COPY``), huge transactions, ``INSERT … SELECT``, keys added and dropped after the
load, ``TRUNCATE``, keyless tables with identical rows, replica identities.

Each case ends exact twice over: the verifier (every row, every column) and an
independent count and sum computed on each side. Each runs once with one consumer and
once with the consumer SIGKILLed mid-load and restarted.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from event_processor.consumer.projection import keyless_count
from event_processor.settings import Settings
from event_processor.testing import wait_until
from event_processor.verify.drain import KafkaProgress
from tests.integrity.integrity_helpers import assert_verified

pytestmark = pytest.mark.integrity

BULK_ROWS = 100_000
DRAIN_REPORT = Path("reports") / "bulk-drain.json"
MODES = ["plain", "sigkill"]


def _pg_count_sum(cur: Any, table: str, column: str = "v") -> tuple[int, int]:
    cur.execute(f'SELECT count(*), coalesce(sum("{column}"), 0) FROM public."{table}"')
    count, total = cur.fetchone()
    return int(count), int(total)


def _mongo_count_sum(mongo_db: Any, collection: str, column: str = "v") -> tuple[int, int]:
    """Rows and the sum of ``column`` as the read model holds them (keyless documents
    stand for ``keyless_count`` copies)."""
    count = total = 0
    for doc in mongo_db[collection].find({}):
        copies = keyless_count(doc) if "_ops" in doc else 1
        count += copies
        total += copies * int(doc.get(column) or 0)
    return count, total


def _wait_drained(settings: Settings, table: str, events: int, timeout_s: float) -> float:
    """Wait until every one of the table's ``events`` change events is on Kafka and the
    consumer group has committed past all of them (it commits only what MongoDB
    acknowledged); returns when they were all on Kafka (wall clock)."""
    topic = f"{settings.topic_prefix}.public.{table}"
    progress = KafkaProgress(settings, settings.consumer_group)
    captured = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            snap = progress.snapshot()
            on_kafka = sum(e for (t, _), e in snap.end.items() if t == topic)
            if on_kafka >= events and not captured:
                captured = time.time()
            if captured and snap.lag == 0:
                return captured
            time.sleep(0.1)
    finally:
        progress.close()
    raise AssertionError(f"{table}: not drained within {timeout_s:g} s")


def _assert_exact(
    settings: Settings, pg_conn: Any, mongo_db: Any, table: str, column: str = "v"
) -> None:
    assert_verified(settings, timeout_s=300)
    with pg_conn.cursor() as cur:
        expected = _pg_count_sum(cur, table, column)
    assert _mongo_count_sum(mongo_db, table, column) == expected, (
        f"{table}: read model (count, sum of {column}) differs from PostgreSQL's {expected}"
    )
    leftovers = mongo_db[table].count_documents({"_id": {"$regex": "^h:"}})
    with pg_conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND indisprimary",
            (f'public."{table}"',),
        )
        keyed = cur.fetchone()[0] > 0
    if keyed:
        assert leftovers == 0, f"{table} has a key but {leftovers} content-named documents"


def _run(
    start_consumer: Any, mode: str, work: Callable[[], None], started: Callable[[], bool]
) -> None:
    """Run ``work`` against a running consumer; in mode ``sigkill`` the consumer is
    killed once ``started()`` holds (it is applying the load), and restarted."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    first = start_consumer("first")
    worker = threading.Thread(target=guarded, name="itest-foreign-load")
    worker.start()
    try:
        if mode == "sigkill":
            assert wait_until(started, 180, 0.05), "the consumer never started applying"
            assert first.alive()
            first.kill()
            time.sleep(0.5)  # changes keep arriving while no consumer runs
            start_consumer("after-kill")
    finally:
        worker.join(600)
    assert not errors, f"the workload failed: {errors[0]!r}"


def _copy(settings: Settings, table: str, columns: str, lines: list[str]) -> float:
    """COPY the lines in one transaction on a connection of its own; returns the
    wall time of its commit."""
    conn = psycopg2.connect(settings.postgres_dsn(), application_name="itest-copy")
    try:
        with conn.cursor() as cur:
            cur.copy_expert(
                f'COPY public."{table}" ({columns}) FROM STDIN WITH (FORMAT csv)',
                io.StringIO("".join(lines)),
            )
        conn.commit()
        return time.time()
    finally:
        conn.close()


def _record_drain(case: str, rows: int, seconds: float, on_kafka_s: float) -> None:
    """Drain rate from the COPY's commit to the last acknowledgement, and when the last
    event was on Kafka (what Debezium and Connect alone took)."""
    DRAIN_REPORT.parent.mkdir(parents=True, exist_ok=True)
    figures = json.loads(DRAIN_REPORT.read_text()) if DRAIN_REPORT.exists() else {}
    figures[case] = {"rows": rows, "seconds": round(seconds, 2),
                     "rows_per_s": round(rows / seconds, 1),
                     "all_on_kafka_after_s": round(on_kafka_s, 2)}  # fmt: skip
    DRAIN_REPORT.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{case}: {rows} rows drained in {seconds:.1f} s = {rows / seconds:,.0f} rows/s"
          f" (all on Kafka after {on_kafka_s:.1f} s)")  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "keyless"])
def test_copy_bulk_load(
    ep_stack: Settings,
    pg_conn: Any,
    mongo_db: Any,
    scratch_tables: Any,
    start_consumer: Any,
    keyed: bool,
    mode: str,
) -> None:
    """100,000 rows in one COPY: rows of one multi-row WAL record share its LSN. The
    keyless table repeats every tenth row exactly (identical copies)."""
    if keyed:
        table = scratch_tables("copy_keyed", "id bigint PRIMARY KEY, v int, note text")
        columns = "id, v, note"
        lines = [f"{i},{i * 7 % 1000},note {i}\n" for i in range(1, BULK_ROWS + 1)]
    else:
        table = scratch_tables("copy_keyless", "v int, note text")
        columns = "v, note"
        lines = [f"{(i - i % 10 // 9) * 3 % 1000},n{i - i % 10 // 9}\n"
                 for i in range(1, BULK_ROWS + 1)]  # fmt: skip
        with pg_conn.cursor() as cur:
            cur.execute(f"ALTER TABLE public.{table} REPLICA IDENTITY FULL")
    committed: list[float] = []

    def load() -> None:
        committed.append(_copy(ep_stack, table, columns, lines))

    _run(start_consumer, mode, load, lambda: mongo_db[table].estimated_document_count() > 5000)
    if mode == "plain":
        captured = _wait_drained(ep_stack, table, BULK_ROWS, 300)
        _record_drain(f"copy_{'keyed' if keyed else 'keyless'}", BULK_ROWS,
                      time.time() - committed[0], captured - committed[0])  # fmt: skip
    _assert_exact(ep_stack, pg_conn, mongo_db, table)


@pytest.mark.parametrize("mode", MODES)
def test_insert_select_and_one_transaction_of_100k_changes(
    ep_stack: Settings,
    pg_conn: Any,
    mongo_db: Any,
    scratch_tables: Any,
    start_consumer: Any,
    mode: str,
) -> None:
    table = scratch_tables("bigtx", "id bigint PRIMARY KEY, v int, note text")

    def load() -> None:
        conn = psycopg2.connect(ep_stack.postgres_dsn(), application_name="itest-bigtx")
        try:
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO public.{table} SELECT g, g % 100, 'n' || g "
                            f"FROM generate_series(1, {BULK_ROWS // 2}) AS g")  # fmt: skip
            conn.commit()
            with conn.cursor() as cur:  # one transaction, 100,000 row changes
                cur.execute(f"UPDATE public.{table} SET v = v + 1")
                cur.execute(f"INSERT INTO public.{table} SELECT g, 7, 'm' || g "
                            f"FROM generate_series({BULK_ROWS // 2 + 1}, {BULK_ROWS}) AS g")  # fmt: skip
            conn.commit()
        finally:
            conn.close()

    _run(start_consumer, mode, load, lambda: mongo_db[table].estimated_document_count() > 5000)
    _assert_exact(ep_stack, pg_conn, mongo_db, table)


@pytest.mark.parametrize("mode", MODES)
def test_key_added_after_the_load_then_dropped(
    ep_stack: Settings,
    pg_conn: Any,
    mongo_db: Any,
    scratch_tables: Any,
    start_consumer: Any,
    mode: str,
) -> None:
    """The usual bulk-load recipe: a keyless table, COPY, then ADD PRIMARY KEY and
    updates; then the key dropped again (FULL identity) and more changes."""
    table = scratch_tables("late_key", "id bigint NOT NULL, v int, note text")
    rows = 20_000
    with pg_conn.cursor() as cur:
        cur.execute(f"ALTER TABLE public.{table} REPLICA IDENTITY FULL")
    lines = [f"{i},{i % 50},note {i}\n" for i in range(1, rows + 1)]

    def load() -> None:
        _copy(ep_stack, table, "id, v, note", lines)
        conn = psycopg2.connect(ep_stack.postgres_dsn(), application_name="itest-late-key")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f"ALTER TABLE public.{table} ADD PRIMARY KEY (id)")
                for k in range(1, rows + 1, 97):
                    cur.execute(f"UPDATE public.{table} SET v = v + 1000 WHERE id = %s", (k,))
                cur.execute(f"DELETE FROM public.{table} WHERE id % 101 = 0")
                cur.execute(f"ALTER TABLE public.{table} DROP CONSTRAINT {table}_pkey")
                cur.execute(f"UPDATE public.{table} SET v = v + 1 WHERE id % 89 = 0")
                cur.execute(f"INSERT INTO public.{table} VALUES (1, 1, 'note 1'), (1, 1, 'note 1')")
        finally:
            conn.close()

    _run(start_consumer, mode, load, lambda: mongo_db[table].estimated_document_count() > 2000)
    _assert_exact(ep_stack, pg_conn, mongo_db, table)


@pytest.mark.parametrize("mode", MODES)
def test_truncate_delete_everything_and_hot_rows(
    ep_stack: Settings,
    pg_conn: Any,
    mongo_db: Any,
    scratch_tables: Any,
    start_consumer: Any,
    mode: str,
) -> None:
    """TRUNCATE then new rows, DELETE of every row, one row updated 500 times in one
    transaction, 1,000 one-row transactions."""
    keyed = scratch_tables("trunc", "id bigint PRIMARY KEY, v int")
    keyless = scratch_tables("trunc_nokey", "v int, w text")
    with pg_conn.cursor() as cur:
        cur.execute(f"ALTER TABLE public.{keyless} REPLICA IDENTITY FULL")

    def load() -> None:
        conn = psycopg2.connect(ep_stack.postgres_dsn(), application_name="itest-truncate")
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO public.{keyed} SELECT g, g FROM generate_series(1, 5000) g"
                )
                cur.execute(
                    f"INSERT INTO public.{keyless} SELECT g % 7, 'w' FROM generate_series(1, 3000) g"
                )
            conn.commit()
            with conn.cursor() as cur:
                cur.execute(f"TRUNCATE public.{keyed}, public.{keyless}")
                cur.execute(
                    f"INSERT INTO public.{keyed} SELECT g, 2 * g FROM generate_series(4000, 6000) g"
                )
                cur.execute(
                    f"INSERT INTO public.{keyless} SELECT g % 5, 'x' FROM generate_series(1, 500) g"
                )
            conn.commit()
            with conn.cursor() as cur:
                for _ in range(500):
                    cur.execute(f"UPDATE public.{keyed} SET v = v + 1 WHERE id = 4000")
            conn.commit()
            conn.autocommit = True
            with conn.cursor() as cur:
                for i in range(1000):
                    cur.execute(f"INSERT INTO public.{keyed} VALUES (%s, %s)", (10_000 + i, i))
                cur.execute(f"DELETE FROM public.{keyless}")
                cur.execute(f"INSERT INTO public.{keyless} VALUES (1, 'again'), (1, 'again')")
        finally:
            conn.close()

    _run(start_consumer, mode, load, lambda: mongo_db[keyed].estimated_document_count() > 100)
    _assert_exact(ep_stack, pg_conn, mongo_db, keyed)
    _assert_exact(ep_stack, pg_conn, mongo_db, keyless)


@pytest.mark.parametrize("mode", MODES)
def test_replica_identities(
    ep_stack: Settings,
    pg_conn: Any,
    mongo_db: Any,
    scratch_tables: Any,
    start_consumer: Any,
    mode: str,
) -> None:
    """FULL and DEFAULT stream every change; NOTHING (and DEFAULT without a key) make
    PostgreSQL itself refuse UPDATE and DELETE on the published table, so the read model
    cannot silently diverge: inserts land, the rest never happens."""
    full = scratch_tables("ri_full", "id int PRIMARY KEY, v int")
    default = scratch_tables("ri_default", "id int PRIMARY KEY, v int")
    nothing = scratch_tables("ri_nothing", "id int PRIMARY KEY, v int")
    keyless_default = scratch_tables("ri_nokey", "v int")
    with pg_conn.cursor() as cur:
        cur.execute(f"ALTER TABLE public.{full} REPLICA IDENTITY FULL")
        cur.execute(f"ALTER TABLE public.{nothing} REPLICA IDENTITY NOTHING")
    refusals: list[str] = []

    def load() -> None:
        conn = psycopg2.connect(ep_stack.postgres_dsn(), application_name="itest-identity")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for t in (full, default, nothing):
                    cur.execute(
                        f"INSERT INTO public.{t} SELECT g, g FROM generate_series(1, 3000) g"
                    )
                cur.execute(
                    f"INSERT INTO public.{keyless_default} SELECT g FROM generate_series(1, 3000) g"
                )
                for t in (full, default):
                    cur.execute(f"UPDATE public.{t} SET v = v * 2 WHERE id % 3 = 0")
                    cur.execute(f"DELETE FROM public.{t} WHERE id % 7 = 0")
                for t in (nothing, keyless_default):
                    for sql in (f"UPDATE public.{t} SET v = 0", f"DELETE FROM public.{t}"):
                        try:
                            cur.execute(sql)
                        except psycopg2.Error as exc:
                            refusals.append(str(exc).splitlines()[0])
        finally:
            conn.close()

    _run(start_consumer, mode, load, lambda: mongo_db[full].estimated_document_count() > 100)
    assert len(refusals) == 4 and all("replica identity" in r for r in refusals), refusals
    for t in (full, default, nothing, keyless_default):
        _assert_exact(ep_stack, pg_conn, mongo_db, t)


def test_truncating_order_children_keeps_the_orders(
    ep_stack: Settings, pg_conn: Any, mongo_db: Any, clean_state: Any, start_consumer: Any
) -> None:
    """TRUNCATE of an embedded table empties the embedded maps, not the orders."""
    from tests.integrity.integrity_helpers import add_customers, add_orders, add_products

    start_consumer("truncate-children")
    with pg_conn.cursor() as cur:
        customers = add_customers(cur, 20)
        products = add_products(cur, 10)
        add_orders(cur, customers, products, 30, items=2)
    assert_verified(ep_stack)
    with pg_conn.cursor() as cur:
        cur.execute("TRUNCATE public.payments")
        cur.execute("TRUNCATE public.order_items")
    assert_verified(ep_stack)
    assert mongo_db["orders"].count_documents({}) == 30


@pytest.mark.parametrize("mode", MODES)
def test_partitioned_table_other_schema_and_quoted_names(
    ep_stack: Settings,
    pg_conn: Any,
    mongo_db: Any,
    clean_state: Any,
    start_consumer: Any,
    mode: str,
) -> None:
    """A partitioned table lands under its parent's name (rows moving between partitions
    included), a table of another schema named like a domain table lands as
    ``schema.customers`` and leaves the domain ``customers`` alone, and a table and a
    column whose names need quoting land as named."""
    tag = uuid.uuid4().hex[:6]
    schema, part, quoted = f"itest_sales_{tag}", f"itest_part_{tag}", f"itest_Order Lines {tag}"
    other = f"{schema}.customers"
    domain_before = mongo_db["customers"].count_documents({})
    with pg_conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(f"CREATE TABLE {schema}.customers (id bigint PRIMARY KEY, v int)")
        cur.execute(f"CREATE TABLE public.{part} (id bigint, region text, v int, "
                    "PRIMARY KEY (id, region)) PARTITION BY LIST (region)")  # fmt: skip
        for region in ("eu", "us"):
            cur.execute(f"CREATE TABLE public.{part}_{region} PARTITION OF public.{part} "
                        f"FOR VALUES IN ('{region}')")  # fmt: skip
        cur.execute(f'CREATE TABLE public."{quoted}" ("Line Id" bigint PRIMARY KEY, v int, '
                    '"Note Text" text)')  # fmt: skip

    def load() -> None:
        conn = psycopg2.connect(ep_stack.postgres_dsn(), application_name="itest-names")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for start in range(1, 3001, 500):  # several transactions, so a kill lands
                    rows = f"generate_series({start}, {start + 499}) g"
                    cur.execute(f"INSERT INTO {schema}.customers SELECT g, g FROM {rows}")
                    cur.execute(f"INSERT INTO public.{part} SELECT g, "
                                f"CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g FROM {rows}")  # fmt: skip
                    cur.execute(
                        f"INSERT INTO public.\"{quoted}\" SELECT g, g, 'n ' || g FROM {rows}"
                    )
                    time.sleep(0.2)
                cur.execute(f"UPDATE {schema}.customers SET v = v * 2 WHERE id % 3 = 0")
                cur.execute(f"UPDATE public.{part} SET v = v + 5 WHERE id % 5 = 0")
                # Moves rows to the other partition (a delete and an insert in PostgreSQL).
                cur.execute(f"UPDATE public.{part} SET region = 'us' "
                            "WHERE region = 'eu' AND id % 7 = 0")  # fmt: skip
                cur.execute(f"DELETE FROM public.{part} WHERE id % 11 = 0")
                cur.execute(f'UPDATE public."{quoted}" SET "Note Text" = NULL WHERE v % 4 = 0')
                cur.execute(f'DELETE FROM public."{quoted}" WHERE "Line Id" % 13 = 0')
                cur.execute(f"DELETE FROM {schema}.customers WHERE id % 17 = 0")
        finally:
            conn.close()

    try:
        _run(start_consumer, mode, load,
             lambda: mongo_db[other].estimated_document_count() > 200)  # fmt: skip
        assert_verified(ep_stack, timeout_s=300)
        with pg_conn.cursor() as cur:
            for relation, collection in ((f"{schema}.customers", other),
                                         (f"public.{part}", part),
                                         (f'public."{quoted}"', quoted)):  # fmt: skip
                cur.execute(f"SELECT count(*), sum(v) FROM {relation}")
                count, total = cur.fetchone()
                assert _mongo_count_sum(mongo_db, collection) == (int(count), int(total)), (
                    f"{collection}: read model differs from {relation}"
                )
        names = set(mongo_db.list_collection_names())
        assert not {f"{part}_eu", f"{part}_us"} & names, "partitions landed on their own"
        assert mongo_db["customers"].count_documents({}) == domain_before
        assert "Note Text" in (mongo_db[quoted].find_one({"v": 1}) or {})
    finally:
        with pg_conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            cur.execute(f"DROP TABLE IF EXISTS public.{part}")
            cur.execute(f'DROP TABLE IF EXISTS public."{quoted}"')
        for collection in (other, part, quoted):
            mongo_db.drop_collection(collection)


@pytest.mark.parametrize("mode", MODES)
def test_column_changes_while_changes_stream(
    ep_stack: Settings,
    pg_conn: Any,
    mongo_db: Any,
    scratch_tables: Any,
    start_consumer: Any,
    mode: str,
) -> None:
    """ADD COLUMN without and with a default, DROP COLUMN, RENAME COLUMN and a widening
    ALTER COLUMN TYPE between streams of changes: rows never changed after a DDL end
    with the table's columns too (PostgreSQL logs no row change for them)."""
    table = scratch_tables("ddl", "id bigint PRIMARY KEY, v int, note text, old int")

    def load() -> None:
        conn = psycopg2.connect(ep_stack.postgres_dsn(), application_name="itest-ddl")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for start in range(1, 3001, 500):
                    cur.execute(f"INSERT INTO public.{table} SELECT g, g, 'n' || g, g % 3 "
                                f"FROM generate_series({start}, {start + 499}) g")  # fmt: skip
                steps = [
                    f"ALTER TABLE public.{table} ADD COLUMN plain int",
                    f"ALTER TABLE public.{table} ADD COLUMN filled text DEFAULT 'dflt'",
                    f"ALTER TABLE public.{table} DROP COLUMN old",
                    f"ALTER TABLE public.{table} RENAME COLUMN note TO remark",
                    f"ALTER TABLE public.{table} ALTER COLUMN v TYPE bigint",
                ]
                for i, ddl in enumerate(steps):
                    cur.execute(ddl)
                    # A few rows change after each DDL; most never do again.
                    cur.execute(f"UPDATE public.{table} SET v = v + 1 WHERE id % 97 = {i}")
                    cur.execute(f"INSERT INTO public.{table} (id, v) VALUES ({10_000 + i}, {i})")
                    cur.execute(f"DELETE FROM public.{table} WHERE id % 89 = {i}")
                    time.sleep(0.5)
        finally:
            conn.close()

    _run(start_consumer, mode, load, lambda: mongo_db[table].estimated_document_count() > 500)
    _assert_exact(ep_stack, pg_conn, mongo_db, table)
    untouched = mongo_db[table].find_one({"_id": "5"}) or {}  # never changed after the load
    assert untouched.get("filled") == "dflt" and "plain" in untouched, untouched
    assert "remark" in untouched and "note" not in untouched and "old" not in untouched


def test_column_dropped_while_the_table_is_re_read(
    ep_stack: Settings, pg_conn: Any, mongo_db: Any, scratch_tables: Any
) -> None:
    """A DROP COLUMN that commits between the re-read's catalogue read and its SELECT
    (seen once in CI: the consumer died with UndefinedColumn and the table never drained)
    is read again on a fresh snapshot. The DDL is held open so that the re-read reads the
    catalogue before it and waits on the table's lock, then committed."""
    from event_processor.consumer.reshape import resync_collection

    table = scratch_tables("resync", "id bigint PRIMARY KEY, v int, old int")
    with pg_conn.cursor() as cur:
        cur.execute(f"INSERT INTO public.{table} SELECT g, g, g FROM generate_series(1, 2000) g")
    ddl = psycopg2.connect(ep_stack.postgres_dsn(), application_name="itest-resync-ddl")
    outcome: dict[str, Any] = {}

    def resync() -> None:
        try:
            outcome["rows"] = resync_collection(
                ep_stack.postgres_dsn(), mongo_db[table], "public", table, 1
            )
        except Exception as exc:  # the assertion below names it
            outcome["error"] = exc

    try:
        with ddl.cursor() as cur:
            cur.execute(f"ALTER TABLE public.{table} DROP COLUMN old")  # not committed yet
        reader = threading.Thread(target=resync)
        reader.start()

        def resync_waits_on_the_lock() -> bool:
            with pg_conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'ep-consumer-resync' AND wait_event_type = 'Lock'")  # fmt: skip
                return bool(cur.fetchone()[0])

        assert wait_until(resync_waits_on_the_lock, 30), "the re-read never waited on the DDL"
        ddl.commit()
        reader.join(timeout=60)
    finally:
        ddl.close()
    assert "error" not in outcome, f"the re-read failed: {outcome.get('error')!r}"
    assert outcome["rows"] == 2000
    docs = list(mongo_db[table].find({}))
    assert len(docs) == 2000
    assert all("old" not in d and d["v"] == int(d["_id"]) for d in docs)
