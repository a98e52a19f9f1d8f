"""Type-strict equality, difference paths, the comparator and the report (no services)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bson.int64 import Int64

from event_processor.verify.compare import Comparator, Expected, canonical_row, with_refs
from event_processor.verify.convert import ColumnType, Float32, plan_column
from event_processor.verify.diff import (
    MISSING,
    FieldDiff,
    canonical,
    differences,
    document_differences,
    documents_equal,
    same,
    show,
)
from event_processor.verify.report import (
    DrainStatus,
    FindingSink,
    TableResult,
    VerifyReport,
)
from event_processor.verify.source import TableInfo

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1, True),
        (1, Int64(1), True),  # int64 from BSON is still an int
        (1, 1.0, False),
        (1, True, False),
        (True, 1, False),
        ("1", 1, False),
        (1.5, 1.5, True),
        (float("nan"), float("nan"), True),
        (None, None, True),
        (None, "", False),
        (b"\x00", b"\x00", True),
        (b"\x00", "AA==", False),
        ({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1, 2], [2, 1], False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),  # key order does not matter
        (Float32(0.1), 0.10000000149011612, True),
    ],
)
def test_same_is_type_strict(a: Any, b: Any, equal: bool) -> None:
    assert same(a, b) is equal


def test_differences_point_at_the_path() -> None:
    e = {"address": {"city": "Lisboa", "lines": ["a", 1]}, "tier": "gold"}
    a = {"address": {"city": "Porto", "lines": ["a", 2]}, "tier": "gold", "x": 1}
    assert differences(e, a) == [
        ("address.city", "Lisboa", "Porto"),
        ("address.lines[1]", 1, 2),
        ("x", MISSING, 1),
    ]
    assert differences([1], [1, 2], "tags") == [("tags", [1], [1, 2])]
    assert differences({"a": 1}, {"a": 1}) == []


def test_document_comparison_ignores_metadata_fields() -> None:
    expected = {"id": 1, "name": "x"}
    actual = {"_id": "1", "_lsn": 99, "id": 1, "name": "x"}
    assert documents_equal(expected, actual)
    assert document_differences(expected, actual) == []
    actual["extra"] = True
    assert not documents_equal(expected, actual)
    assert document_differences(expected, actual) == [("extra", MISSING, True)]
    assert not documents_equal(expected, {"_id": "1", "id": 1})
    assert document_differences(expected, {"_id": "1", "id": 1}) == [("name", "x", MISSING)]


def test_readable_field_lines() -> None:
    assert FieldDiff("total", "39.98", "39.90").describe() == (
        "field total: postgres '39.98' != mongo '39.90'"
    )
    assert FieldDiff("total", "39.98", 39.98).describe() == (
        "field total: postgres '39.98' (string) != mongo 39.98 (float)"
    )
    assert FieldDiff("phone", None, MISSING).describe() == (
        "field phone: postgres null != mongo (absent)"
    )
    assert show("x" * 100, width=20).count("...") == 1 and len(show("x" * 100, width=20)) <= 20
    assert show(b"\x00\xff") == "b'00ff'"


def test_canonical_is_order_insensitive_and_type_faithful() -> None:
    assert canonical({"a": 1, "b": [1.5]}) == canonical({"b": [1.5], "a": 1})
    assert canonical(1) != canonical(1.0) != canonical("1")
    assert canonical(Float32(0.1)) == canonical(0.10000000149011612, float32=True)
    assert canonical_row({"r": 0.1}, frozenset({"r"})) == canonical_row(
        {"r": Float32(0.1)}, frozenset({"r"})
    )


# --- the comparator on in-memory shapes ---------------------------------------------------


def _table(name: str, cols: dict[str, str], pk: list[str]) -> TableInfo:
    return TableInfo(name, [plan_column(c, ColumnType(t)) for c, t in cols.items()], pk)


def _domain() -> tuple[Expected, dict[str, TableResult]]:
    exp = Expected()
    tables = {
        "customers": _table("customers", {"id": "int8", "full_name": "text"}, ["id"]),
        "products": _table("products", {"id": "int8", "price": "numeric"}, ["id"]),
        "orders": _table(
            "orders", {"id": "int8", "customer_id": "int8", "total": "numeric"}, ["id"]
        ),
        "order_items": _table(
            "order_items",
            {"id": "int8", "order_id": "int8", "product_id": "int8", "quantity": "int4"},
            ["id"],
        ),
        "payments": _table(
            "payments", {"id": "int8", "order_id": "int8", "amount": "numeric"}, ["id"]
        ),
    }
    rows: dict[str, list[dict[str, Any]]] = {
        "customers": [{"id": 1, "full_name": "Ana"}, {"id": 2, "full_name": "Bo"}],
        "products": [{"id": 5, "price": "9.99"}],
        "orders": [{"id": 42, "customer_id": 1, "total": "39.98"}],
        "order_items": [{"id": 7, "order_id": 42, "product_id": 5, "quantity": 2}],
        "payments": [{"id": 9, "order_id": 42, "amount": "39.98"}],
    }
    results = {}
    for name, info in tables.items():
        results[name] = TableResult(name, name, "document")
        results[name].postgres_rows = exp.add_rows(info, rows[name])
    return exp, results


def _read_model() -> dict[str, dict[str, dict[str, Any]]]:
    return {
        "customers": {"1": {"_id": "1", "id": 1, "full_name": "Ana", "_lsn": 1},
                      "2": {"_id": "2", "id": 2, "full_name": "Bo", "_lsn": 2}},
        "products": {"5": {"_id": "5", "id": 5, "price": "9.99"}},
        "orders": {"42": {"_id": "42", "id": 42, "customer_id": "1", "total": "39.98",
                          "items": {"7": {"id": 7, "order_id": "42", "product_id": "5",
                                          "quantity": 2}},
                          "payments": {"9": {"id": 9, "order_id": "42", "amount": "39.98"}}}},
    }  # fmt: skip


def _run(model: dict[str, dict[str, dict[str, Any]]]) -> tuple[FindingSink, dict[str, Any]]:
    exp, results = _domain()
    sink = FindingSink(100)
    cmp = Comparator(sink)
    for name in ("customers", "products"):
        cmp.keyed(results[name], name, exp.documents[name], model.get(name, {}))
    cmp.orders(results, exp, model.get("orders", {}))
    cmp.references(model.get("customers"), model.get("products"), model.get("orders", {}))
    return sink, results


def test_with_refs_turns_references_into_string_ids() -> None:
    assert with_refs({"id": 7, "order_id": 42, "product_id": None}) == {
        "id": 7, "order_id": "42", "product_id": None,
    }  # fmt: skip


def test_a_faithful_read_model_has_no_findings() -> None:
    sink, results = _run(_read_model())
    assert len(sink) == 0, [f.line() for f in sink.kept]
    assert all(r.ok for r in results.values())
    assert results["order_items"].mongo_rows == 1 and results["payments"].mongo_rows == 1


def test_every_kind_of_difference_is_named() -> None:
    model = _read_model()
    model["customers"]["1"]["full_name"] = "Mallory"
    del model["customers"]["2"]
    model["customers"]["3"] = {"_id": "3", "id": 3, "full_name": "Ghost"}
    order = model["orders"]["42"]
    order["total"] = "39.90"
    order["items"]["7"]["quantity"] = 3
    order["items"]["8"] = {"id": 8, "order_id": "41", "product_id": "6", "quantity": 1}
    del order["payments"]["9"]
    model["orders"]["43"] = {"_id": "43", "id": 43, "customer_id": "9",
                             "items": {"7": {"id": 7, "order_id": "43", "product_id": "5"}}}  # fmt: skip
    sink, results = _run(model)
    lines = [f.line() for f in sink.kept]
    assert "customers/1: field full_name: postgres 'Ana' != mongo 'Mallory'" in lines
    assert "customers/2: row has no document in MongoDB" in lines
    assert "customers/3: document without a row in postgres (customers deleted?)" in lines
    assert "orders/42: field total: postgres '39.98' != mongo '39.90'" in lines
    assert "orders/42: field items.7.quantity: postgres 2 != mongo 3" in lines
    assert "orders/42: items/8: entry without a row in postgres (order_items deleted?)" in lines
    assert "orders/42: payments/9: row has no entry in MongoDB" in lines
    assert "orders/43: document without a row in postgres (orders deleted?)" in lines
    assert "orders/42: items/8: order_id '41' but embedded in orders/42" in lines
    assert "orders/42: items/8: product_id '6': products/6 does not exist" in lines
    assert "orders/43: customer_id '9': customers/9 does not exist" in lines
    assert "orders/43: items/7 is also embedded in orders/42" in lines
    assert sink.counts == {"field": 3, "missing": 2, "extra": 4, "reference": 3, "duplicate": 1}
    assert results["customers"].missing == 1 and results["customers"].extra == 1
    assert results["order_items"].extra == 2 and results["order_items"].mismatched == 1
    assert results["payments"].missing == 1 and not results["payments"].ok


def test_keyless_rows_compare_as_multisets() -> None:
    info = _table("log", {"note": "text", "n": "int4"}, [])
    exp = Expected()
    rows = [{"note": "dup", "n": 1}, {"note": "dup", "n": 1}, {"note": "one", "n": 2}]
    result = TableResult("log", "log", "keyless")
    result.postgres_rows = exp.add_rows(info, rows)
    docs = [
        {"_id": "h:a", "note": "dup", "n": 1, "_ops": {"l1": 1, "l2": 1}},
        {"_id": "h:b", "note": "one", "n": 2, "_ops": {"l3": 1}},
        {"_id": "h:c", "note": "gone", "n": 3, "_ops": {"l4": 1, "l5": -1}},  # deleted: fine
    ]
    sink = FindingSink(10)
    Comparator(sink).keyless(result, "log", exp.keyless["log"], docs, frozenset())
    assert len(sink) == 0 and result.ok and result.mongo_rows == 3
    docs[0]["_ops"] = {"l1": 1}
    docs.append({"_id": "h:d", "note": "new", "n": 4, "_ops": {"l6": 1}})
    result = TableResult("log", "log", "keyless", postgres_rows=3)
    sink = FindingSink(10)
    Comparator(sink).keyless(result, "log", exp.keyless["log"], docs, frozenset())
    lines = [f.line() for f in sink.kept]
    assert "log: row {'note': 'dup', 'n': 1}: postgres x2 != mongo x1" in lines
    assert "log/h:d: row {'note': 'new', 'n': 4}: postgres x0 != mongo x1" in lines
    assert result.missing == 1 and result.extra == 1


def test_duplicate_ids_from_a_read_are_reported() -> None:
    sink = FindingSink(10)
    out = Comparator(sink).index("c", [{"_id": "1"}, {"_id": "1"}, {"_id": 2}])
    assert set(out) == {"1", "2"} and sink.counts == {"duplicate": 1}


def test_report_summary_and_json(tmp_path: Path) -> None:
    sink = FindingSink(1)
    from event_processor.verify.report import FIELD, Finding

    sink.add(Finding(FIELD, "orders", "42", "field total: postgres '39.98' != mongo '39.90'",
                     "total", "39.98", "39.90"))  # fmt: skip
    sink.add(Finding(FIELD, "orders", "43", "field total: ..."))
    report = VerifyReport(
        drain=DrainStatus(drained=True, detail="lag 0"),
        tables=[TableResult("orders", "orders", "document", 2, 2, mismatched=2)],
        findings=sink.kept,
        finding_counts=dict(sink.counts),
        timings={"drain_s": 1.0, "compare_s": 0.5, "total_s": 2.0},
    )
    assert not report.ok
    lines = report.summary_lines()
    assert lines[0].startswith("verify FAILED: 1 tables, 2 rows, 2 problem(s)")
    assert "    orders/42: field total: postgres '39.98' != mongo '39.90'" in lines
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ok"] is False and data["total_findings"] == 2 and len(data["findings"]) == 1
    assert data["findings"][0]["postgres"] == "39.98" and data["tables"][0]["ok"] is False
    ok = VerifyReport(drain=DrainStatus(drained=True), tables=[TableResult("t", "t", "generic")])
    assert ok.ok and ok.summary_lines()[0].startswith("verify OK")
    assert not VerifyReport(drain=DrainStatus(drained=False)).ok


def test_lsn_parsing_for_the_drain_wait() -> None:
    from event_processor.verify.drain import KafkaSnapshot, parse_lsn

    assert parse_lsn("0/5426FD8") == 0x5426FD8
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert parse_lsn(None) is None and parse_lsn("") is None
    a = KafkaSnapshot({("t", 0): 5}, {("t", 0): 5}, 0, [])
    b = KafkaSnapshot({("t", 0): 6}, {("t", 0): 5}, 1, [("t", 0, 1)])
    assert a.fingerprint != b.fingerprint
