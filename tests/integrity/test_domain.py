"""Domain tables through the live pipeline, each test ending in the verifier."""

from __future__ import annotations

from typing import Any

import pytest

from event_processor.settings import Settings
from event_processor.source.generator import run_load, seed_catalogue
from event_processor.source.workload import WorkloadModel
from tests.integrity.integrity_helpers import (
    add_customers,
    add_orders,
    add_products,
    assert_verified,
)

pytestmark = pytest.mark.integrity


def test_mixed_inserts_updates_deletes(
    ep_stack: Settings, pg_conn: Any, clean_state: Any, start_consumer: Any, tmp_path: Any
) -> None:
    start_consumer("mixed")
    # The Faker workload at 300 events/s over several connections (concurrent commits):
    # signups, updates, orders with items, payments, status changes, cancellations.
    model = WorkloadModel(seed=11, catalogue_size=60)
    seed_catalogue(ep_stack.postgres_dsn(), model)
    run_load(ep_stack.postgres_dsn(), model.plan(450), rate=300.0)
    with pg_conn.cursor() as cur:
        # Deletes of every kind: whole orders (cascading to items and payments), single
        # items, customers without orders, products nobody ordered.
        cur.execute("DELETE FROM orders WHERE id IN (SELECT id FROM orders ORDER BY id LIMIT 15)")
        cur.execute("DELETE FROM order_items WHERE id IN (SELECT id FROM order_items "
                    "ORDER BY id DESC LIMIT 10)")  # fmt: skip
        cur.execute(
            "DELETE FROM customers c WHERE c.id % 2 = 0 AND NOT EXISTS "
            "(SELECT 1 FROM orders o WHERE o.customer_id = c.id)"
        )
        cur.execute("DELETE FROM products p WHERE NOT EXISTS "
                    "(SELECT 1 FROM order_items i WHERE i.product_id = p.id)")  # fmt: skip
        # Updates that move things: an item to another order, a payment to another order.
        cur.execute("UPDATE order_items SET order_id = (SELECT max(id) FROM orders) "
                    "WHERE id = (SELECT min(id) FROM order_items)")  # fmt: skip
        cur.execute("UPDATE payments SET order_id = (SELECT min(id) FROM orders), amount = 1.01 "
                    "WHERE id = (SELECT max(id) FROM payments)")  # fmt: skip
        cur.execute("UPDATE products SET price = price + 0.01, tags = tags || 'updated'::text "
                    "WHERE id % 3 = 0")  # fmt: skip
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone()[0] > 20, "the workload should have placed orders"
    report = assert_verified(ep_stack, tmp_path / "verify.json")
    assert (tmp_path / "verify.json").exists()
    rows = {t.table: t.postgres_rows for t in report.tables}
    assert rows["order_items"] > 0 and rows["payments"] > 0 and rows["customers"] > 0


def test_many_updates_to_one_row_in_quick_succession(
    ep_stack: Settings, pg_conn: Any, clean_state: Any, start_consumer: Any
) -> None:
    with pg_conn.cursor() as cur:
        customers = add_customers(cur, 3)
        products = add_products(cur, 3)
        (order,) = add_orders(cur, customers, products, 1, items=2)
        cur.execute("SELECT min(id) FROM order_items WHERE order_id = %s", (order,))
        item = cur.fetchone()[0]
    start_consumer("rapid")
    with pg_conn.cursor() as cur:
        for i in range(300):  # each its own transaction (autocommit), back to back
            cur.execute(
                "UPDATE customers SET full_name = %s, tier = %s, updated_at = now() WHERE id = %s",
                (f"Name v{i}", ("bronze", "silver", "gold")[i % 3], customers[0]),
            )
            cur.execute("UPDATE orders SET total = %s, status = %s WHERE id = %s",
                        (f"{i}.{i % 100:02d}", ("placed", "paid")[i % 2], order))  # fmt: skip
            if i % 3 == 0:
                cur.execute("UPDATE order_items SET quantity = %s WHERE id = %s", (1 + i, item))
        # The last state also has the row deleted and re-created under the same id.
        cur.execute("DELETE FROM payments WHERE order_id = %s", (order,))
        again = (
            "INSERT INTO payments (id, order_id, amount, method, reference) "
            "OVERRIDING SYSTEM VALUE VALUES (999001, %s, %s, %s, gen_random_uuid())"
        )
        cur.execute(again, (order, "5.00", "paypal"))
        cur.execute("DELETE FROM payments WHERE id = 999001")
        cur.execute(again, (order, "6.00", "card"))
    assert_verified(ep_stack)


def test_one_statement_changing_many_rows(
    ep_stack: Settings, pg_conn: Any, clean_state: Any, start_consumer: Any
) -> None:
    start_consumer("bulk")
    with pg_conn.cursor() as cur:
        customers = add_customers(cur, 500)  # one INSERT ... SELECT, one transaction
        products = add_products(cur, 1000)
        add_orders(cur, customers[:100], products, 200, items=2)
    # Applied first, so that the statements below change documents that already exist
    # (one batch of many updates to existing documents, not inserts folded with them).
    assert_verified(ep_stack)
    with pg_conn.cursor() as cur:
        cur.execute("UPDATE products SET price = price * 1.1, in_stock = NOT in_stock")
        cur.execute("UPDATE customers SET tier = 'gold', address = address || "
                    "'{\"verified\": true}'::jsonb WHERE id % 2 = 0")  # fmt: skip
        cur.execute("UPDATE order_items SET quantity = quantity + 1")
        cur.execute("DELETE FROM products p WHERE p.id % 3 = 0 AND NOT EXISTS "
                    "(SELECT 1 FROM order_items i WHERE i.product_id = p.id)")  # fmt: skip
        cur.execute("DELETE FROM orders WHERE id % 4 = 0")  # cascades to items and payments
    assert_verified(ep_stack)


def test_one_large_transaction(
    ep_stack: Settings, pg_conn: Any, clean_state: Any, start_consumer: Any
) -> None:
    start_consumer("bigtx")
    pg_conn.autocommit = False
    try:
        with pg_conn.cursor() as cur:
            customers = add_customers(cur, 200)
            products = add_products(cur, 200)
            orders = add_orders(cur, customers, products, 300, items=5)  # 1,500 items
            # ... and inside the same transaction, changes to rows it created.
            cur.execute("UPDATE orders SET status = 'paid' WHERE id = ANY(%s)", (orders[::2],))
            cur.execute("DELETE FROM orders WHERE id = ANY(%s)", (orders[::10],))
            cur.execute("SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM products)"
                        " + (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_items)"
                        " + (SELECT count(*) FROM payments)")  # fmt: skip
            assert cur.fetchone()[0] >= 2000
        pg_conn.commit()
    finally:
        pg_conn.autocommit = True
    assert_verified(ep_stack)
