"""The verifier fails, naming the row, when the read model is changed behind its back."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest

from event_processor.report.html import integrity_section
from event_processor.report.verdict import EXAMPLES, integrity_breakdown
from event_processor.settings import Settings
from event_processor.verify import run_verify
from tests.integrity.integrity_helpers import (
    add_customers,
    add_orders,
    add_products,
    assert_verified,
)

pytestmark = pytest.mark.integrity


def test_verify_fails_naming_documents_changed_or_removed_by_hand(
    ep_stack: Settings,
    pg_conn: Any,
    clean_state: Any,
    start_consumer: Any,
    mongo_db: Any,
    tmp_path: Any,
) -> None:
    start_consumer("tamper")
    with pg_conn.cursor() as cur:
        customers = add_customers(cur, 10)
        products = add_products(cur, 10)
        orders = add_orders(cur, customers, products, 5, items=2)
        # An item pointing at the product we are going to remove from MongoDB.
        cur.execute("UPDATE order_items SET product_id = %s WHERE id = "
                    "(SELECT min(id) FROM order_items WHERE order_id = %s)",
                    (products[0], orders[0]))  # fmt: skip
        cur.execute("SELECT id, quantity FROM order_items WHERE order_id = %s ORDER BY id",
                    (orders[0],))  # fmt: skip
        (item, quantity), _ = cur.fetchall()
        cur.execute("SELECT id FROM payments WHERE order_id = %s", (orders[1],))
        (payment,) = cur.fetchone()
        cur.execute("SELECT full_name FROM customers WHERE id = %s", (customers[0],))
        (name,) = cur.fetchone()
        cur.execute("SELECT total::text FROM orders WHERE id = %s", (orders[2],))
        (total,) = cur.fetchone()
        cur.execute("SELECT count(*) FROM order_items WHERE product_id = %s", (products[0],))
        (dangling,) = cur.fetchone()
    assert_verified(ep_stack)

    c0, c1, p0 = str(customers[0]), str(customers[1]), str(products[0])
    o0, o1, o2 = str(orders[0]), str(orders[1]), str(orders[2])
    mongo_db.customers.update_one({"_id": c0}, {"$set": {"full_name": "Mallory"}})
    mongo_db.customers.update_one({"_id": c1}, {"$set": {"is_active": "yes"}})
    mongo_db.customers.insert_one({"_id": "424242", "email": "ghost@example.com"})
    mongo_db.products.delete_one({"_id": p0})
    mongo_db.orders.update_one({"_id": o0}, {"$set": {f"items.{item}.quantity": quantity + 90}})
    mongo_db.orders.update_one({"_id": o1}, {"$unset": {f"payments.{payment}": ""}})
    mongo_db.orders.update_one({"_id": o2}, {"$set": {"total": float(total)}})

    report = run_verify(ep_stack, 30, tmp_path / "verify.json")
    assert not report.ok
    assert report.drain.drained, "nothing was in flight: the pipeline had drained"
    summary = "\n".join(report.summary_lines(max_lines=50))
    assert summary.startswith("verify FAILED")
    lines = [f.line() for f in report.findings]
    expected = [
        f"customers/{c0}: field full_name: postgres {name!r} != mongo 'Mallory'",
        f"customers/{c1}: field is_active: postgres True (bool) != mongo 'yes' (string)",
        "customers/424242: document without a row in postgres (customers deleted?)",
        f"products/{p0}: row has no document in MongoDB",
        f"orders/{o0}: field items.{item}.quantity: postgres {quantity} != mongo {quantity + 90}",
        f"orders/{o1}: payments/{payment}: row has no entry in MongoDB",
        f"orders/{o2}: field total: postgres {total!r} (string) != mongo {float(total)!r} (float)",
        f"orders/{o0}: items/{item}: product_id {p0!r}: products/{p0} does not exist",
    ]
    for line in expected:
        assert line in lines, f"missing {line!r} in:\n{summary}"
    counts = {"field": 4, "extra": 1, "missing": 2, "reference": dangling}
    assert report.finding_counts == counts, summary
    by_table = {t.table: t for t in report.tables}
    assert by_table["customers"].mismatched == 2 and by_table["customers"].extra == 1
    assert by_table["products"].missing == 1 and by_table["payments"].missing == 1
    assert by_table["order_items"].mismatched == 1 and not by_table["order_items"].ok

    data = json.loads((tmp_path / "verify.json").read_text())
    assert data["ok"] is False and data["total_findings"] == 7 + dangling
    assert {f["line"] for f in data["findings"]} >= set(expected)
    rec = next(f for f in data["findings"] if f["key"] == o2 and f["kind"] == "field")
    assert rec["field"] == "total" and rec["postgres"] == total and rec["mongo"] == float(total)

    # The report's integrity breakdown, from this real verifier report: per table what is
    # wrong, and the first findings as examples (report.verdict, report.html).
    breakdown = integrity_breakdown(data)
    assert breakdown is not None and breakdown["drained"]
    tables = {t["table"]: t for t in breakdown["tables"]}
    assert tables["customers"]["mismatched"] == 2 and tables["customers"]["extra"] == 1
    assert tables["products"]["missing"] == 1 and tables["payments"]["missing"] == 1
    assert breakdown["examples"] == [f["line"] for f in data["findings"][:EXAMPLES]]
    section = integrity_section(breakdown)
    assert "What the verifier found" in section and html.escape(breakdown["examples"][0]) in section
