"""The open-loop generator against the stack's PostgreSQL (the ep_stack fixture).

These tests empty the domain tables of that database.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from event_processor.metrics.timing import SendRecord
from event_processor.settings import Settings
from event_processor.source.generator import GeneratorError, run_load, seed_catalogue
from event_processor.source.schema import DOMAIN_TABLES, apply_schema, truncate_all
from event_processor.source.workload import (
    OrderCancelled,
    OrderPlaced,
    PlannedEvent,
    WorkloadModel,
)

pytestmark = pytest.mark.integration

RATE = 200.0
EVENTS = 200


@pytest.fixture(scope="module")
def dsn(ep_stack: Settings) -> str:
    """The stack's PostgreSQL (local or the one EP_PG_DSN points at)."""
    return ep_stack.postgres_dsn()


@pytest.fixture
def conn(pg_conn: Any) -> Iterator[Any]:
    apply_schema(pg_conn)
    apply_schema(pg_conn)  # idempotent
    truncate_all(pg_conn)
    yield pg_conn


def _count(conn: Any, sql: str) -> int:
    with conn.cursor() as cur:
        cur.execute(sql)
        return int(cur.fetchone()[0])


def test_schema_has_the_contract_tables_and_full_identity(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT relname, relreplident FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind = 'r' AND relname = ANY(%s)",
            (list(DOMAIN_TABLES),),
        )
        identity = dict(cur.fetchall())
    assert set(identity) == set(DOMAIN_TABLES)
    assert identity["order_items"] == identity["payments"] == "f"


def test_a_planned_run_at_200_per_second(dsn: str, conn: Any) -> None:
    model = WorkloadModel(seed=123)
    assert seed_catalogue(dsn, model) == len(model.catalogue)
    plan = model.plan(EVENTS)
    seen: list[SendRecord] = []
    records = run_load(dsn, plan, RATE, on_sent=seen.append, progress=False, connections=1)
    conn.rollback()  # a fresh snapshot for the checks

    assert [r.seq for r in records] == list(range(EVENTS))
    assert sorted(seen, key=lambda r: r.seq) == records
    assert [r.kind for r in records] == [e.kind for e in plan]
    assert [r.rows for r in records] == [e.rows for e in plan]
    _assert_schedule(records)
    _assert_rows(conn, model, plan)
    _assert_tx_ids(conn, records, plan)


def _assert_schedule(records: list[SendRecord]) -> None:
    start = records[0].intended_us
    # Fixed before the run: exactly i / rate after the start, whatever happened.
    assert [r.intended_us - start for r in records] == [round(i * 1e6 / RATE) for i in
                                                        range(EVENTS)]  # fmt: skip
    assert all(r.schedule_lag_us >= 0 and r.committed_us >= r.sent_us for r in records)
    lags_ms = [r.schedule_lag_us / 1000 for r in records]
    assert statistics.median(lags_ms) < 2.0, f"median schedule lag {statistics.median(lags_ms)}"
    span_s = (records[-1].sent_us - records[0].sent_us) / 1e6
    assert span_s == pytest.approx((EVENTS - 1) / RATE, rel=0.1)


def _assert_rows(conn: Any, model: WorkloadModel, plan: list[Any]) -> None:
    kinds = Counter(e.kind for e in plan)
    orders = [e.params for e in plan if isinstance(e.params, OrderPlaced)]
    voided = sum(isinstance(e.params, OrderCancelled) and bool(e.params.voided_payment_id)
                 for e in plan)  # fmt: skip
    assert _count(conn, "SELECT count(*) FROM customers") == kinds["customer_signup"]
    assert _count(conn, "SELECT count(*) FROM products") == len(model.catalogue)
    assert _count(conn, "SELECT count(*) FROM orders") == len(orders)
    assert _count(conn, "SELECT count(*) FROM order_items") == sum(len(o.items) for o in orders)
    assert _count(conn, "SELECT count(*) FROM payments") == kinds["payment_captured"] - voided
    assert (
        _count(conn, "SELECT count(*) FROM orders WHERE status = 'cancelled'")
        == (kinds["order_cancelled"])
    )
    # Totals are the sum of the items, in the database as in the plan.
    assert (
        _count(
            conn,
            """SELECT count(*) FROM orders o WHERE total <> (
        SELECT sum(quantity * unit_price) FROM order_items i WHERE i.order_id = o.id)""",
        )
        == 0
    )


def _assert_tx_ids(conn: Any, records: list[SendRecord], plan: list[Any]) -> None:
    tx_ids = [r.tx_id for r in records]
    assert all(0 < t < 2**32 for t in tx_ids)
    assert len(set(tx_ids)) == len(tx_ids)
    # The reported id is the xid that wrote the rows (what Debezium reports as txId):
    # order items are never updated, so their xmin is the order_placed transaction.
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT order_id, xmin::text::bigint FROM order_items")
        xmin_by_order = dict(cur.fetchall())
    for record, event in zip(records, plan, strict=True):
        if isinstance(event.params, OrderPlaced):
            assert xmin_by_order[event.params.order_id] == record.tx_id


def test_several_connections_keep_every_reference_valid(dsn: str, conn: Any) -> None:
    model = WorkloadModel(seed=7)
    seed_catalogue(dsn, model)
    plan = model.plan(600)
    records = run_load(dsn, plan, 1000.0, connections=3)
    conn.rollback()
    assert len({r.tx_id for r in records}) == len(plan)
    assert [r.rows for r in records] == [e.rows for e in plan]
    assert (
        _count(conn, "SELECT count(*) FROM customers")
        == Counter(e.kind for e in plan)["customer_signup"]
    )


def test_a_plan_that_does_not_match_the_database_fails_loudly(dsn: str, conn: Any) -> None:
    model = WorkloadModel(seed=8)
    seed_catalogue(dsn, model)
    plan = model.plan(20)
    run_load(dsn, plan, 1000.0)
    with pytest.raises(GeneratorError, match="generator"):
        run_load(dsn, plan, 1000.0)  # the same ids again: duplicate keys


def test_a_transaction_that_changes_other_rows_than_planned_is_rolled_back(
    dsn: str, conn: Any
) -> None:
    """One round trip per transaction (autocommit) still rolls a mismatch back: here a
    cancellation whose order is not in the planned status deletes the payment (1 row)
    but updates no order, so the statement raises and the payment stays."""
    model = WorkloadModel(seed=9)
    seed_catalogue(dsn, model)
    run_load(dsn, model.plan(200), 1000.0)
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT o.id, p.id FROM orders o JOIN payments p ON p.order_id = o.id "
            "WHERE o.status = 'paid' LIMIT 1"
        )
        row = cur.fetchone()
    assert row is not None, "the plan made no paid order"
    order_id, payment_id = row
    wrong = PlannedEvent(0, 0, OrderCancelled(order_id, "shipped", "test", payment_id))
    with pytest.raises(GeneratorError, match="changed 1 rows, the plan expects 2"):
        run_load(dsn, [wrong], 100.0)
    conn.rollback()
    assert _count(conn, f"SELECT count(*) FROM payments WHERE id = {int(payment_id)}") == 1
    assert _count(conn, f"SELECT count(*) FROM orders WHERE id = {int(order_id)} "
                  "AND status = 'paid'") == 1  # fmt: skip
