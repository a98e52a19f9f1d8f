"""PostgreSQL against the read model: shaping rows like the projections do, and comparing.

The read-model mapping (``consumer.projection``): ``customers`` and ``products`` one
document per row; ``orders`` one document per order with ``items`` and ``payments`` maps
keyed by their ids; reference columns (customer_id, product_id, order_id) stored as the
string _id they point at; every other table generically, one collection per table, _id
from the primary key (``doc_id``), or, without a primary key, one document per distinct
row content whose ``_ops`` values sum to the row's multiplicity (``keyless_count``).

Each collection is read with ONE ``find({})`` (FerretDB scans on any other filter) and
compared in memory by key; PostgreSQL with one query per table. The shaping and
comparison functions are pure and unit-tested.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from event_processor.consumer.projection import (
    ORDER_CHILDREN,
    ORDERS,
    REFERENCE_COLUMNS,
    REPLACED_TABLES,
    doc_id,
    keyless_count,
)
from event_processor.source.schema import RACE_BACKLOG_TABLE, RACE_TABLE
from event_processor.verify.diff import (
    FieldDiff,
    canonical,
    document_differences,
    documents_equal,
    show,
)
from event_processor.verify.report import (
    DUPLICATE,
    EXTRA_DOC,
    FIELD,
    MISSING_DOC,
    ORPHAN_COLLECTION,
    REFERENCE,
    FindingSink,
    TableResult,
)
from event_processor.verify.report import Finding as F
from event_processor.verify.source import TableInfo, begin_snapshot, read_catalog, read_rows

Doc = dict[str, Any]
KEYLESS_META = ("_id", "_ops", "_lsn")
DIFFS_PER_DOC = 5

# Tables of schema public the read model does not mirror, each with the reason. Their
# collections (if a consumer wrote any into the read model) are not orphans either.
SKIPPED_TABLES: dict[str, str] = {
    RACE_TABLE: "benchmark table of `event-processor race`: its sinks write to databases "
    "of their own, and the run empties it afterwards",
    RACE_BACKLOG_TABLE: "backlog table of `event-processor race` (as race_events)",
}


def with_refs(row: Doc) -> Doc:
    """Reference columns as the string _id of the document they point at."""
    return {
        k: (doc_id([v]) if k in REFERENCE_COLUMNS and v is not None else v) for k, v in row.items()
    }


def collection_of(table: str) -> str:
    if table in REPLACED_TABLES:
        return REPLACED_TABLES[table]
    if table == ORDERS or table in ORDER_CHILDREN:
        return ORDERS
    return table


def shape_of(table: TableInfo) -> str:
    if table.name in REPLACED_TABLES or table.name == ORDERS:
        return "document"
    if table.name in ORDER_CHILDREN:
        return "embedded"
    return "keyless" if table.keyless else "generic"


# --- the expected read model -------------------------------------------------------------


@dataclass
class Expected:
    """PostgreSQL's rows in the read model's shape."""

    documents: dict[str, dict[str, Doc]] = field(default_factory=dict)  # collection -> _id -> doc
    # "items"/"payments" -> order _id -> entry id -> entry
    embedded: dict[str, dict[str, dict[str, Doc]]] = field(default_factory=dict)
    # collection -> canonical content -> [count, a row]
    keyless: dict[str, dict[Any, list[Any]]] = field(default_factory=dict)

    def add_rows(self, table: TableInfo, rows: Iterable[Doc]) -> int:
        """Shape one table's rows; returns how many there were."""
        n = 0
        name = table.name
        pk = table.primary_key or ["id"]
        if name in ORDER_CHILDREN:
            by_order = self.embedded.setdefault(ORDER_CHILDREN[name], {})
            for row in rows:
                entry = with_refs(row)
                by_order.setdefault(entry["order_id"], {})[doc_id([row["id"]])] = entry
                n += 1
            return n
        if name in REPLACED_TABLES or name == ORDERS:
            docs = self.documents.setdefault(collection_of(name), {})
            single = pk[0] if len(pk) == 1 else None
            for row in rows:
                key = doc_id([row[single]]) if single else doc_id([row[c] for c in pk])
                docs[key] = with_refs(row)
                n += 1
            return n
        if table.keyless:
            counts = self.keyless.setdefault(name, {})
            f32 = table.float32_columns()
            for row in rows:
                ckey = canonical_row(row, f32)
                slot = counts.get(ckey)
                if slot is None:
                    counts[ckey] = [1, row]
                else:
                    slot[0] += 1
                n += 1
            return n
        docs = self.documents.setdefault(name, {})
        if len(pk) == 1:
            c = pk[0]
            for row in rows:
                docs[doc_id([row[c]])] = row
                n += 1
        else:
            for row in rows:
                docs[doc_id([row[c] for c in pk])] = row
                n += 1
        return n


def canonical_row(row: Doc, float32_columns: frozenset[str] = frozenset()) -> Any:
    """Content identity of a keyless row (or of a keyless document without metadata)."""
    return tuple(sorted((k, canonical(v, k in float32_columns)) for k, v in row.items()))


# --- the comparison ----------------------------------------------------------------------


class Comparator:
    """Compares expected shapes with the documents read; reports into a FindingSink."""

    def __init__(self, sink: FindingSink) -> None:
        self.sink = sink

    def index(self, collection: str, docs: Iterable[Doc]) -> dict[str, Doc]:
        """_id -> document; a repeated _id is a duplicate finding."""
        out: dict[str, Doc] = {}
        for d in docs:
            key = d.get("_id")
            skey = key if isinstance(key, str) else repr(key)
            if skey in out:
                self.sink.add(F(DUPLICATE, collection, skey, "the same _id was returned twice"))
                continue
            out[skey] = d
        return out

    def keyed(
        self, result: TableResult, collection: str, expected: dict[str, Doc], actual: dict[str, Doc]
    ) -> None:
        """One document per row: missing, extra and differing documents."""
        result.mongo_rows = len(actual)
        add = self.sink.add
        for key, doc in expected.items():
            got = actual.get(key)
            if got is None:
                result.missing += 1
                add(F(MISSING_DOC, collection, key, "row has no document in MongoDB"))
                continue
            if not documents_equal(doc, got):
                result.mismatched += 1
                for path, e, a in document_differences(doc, got, DIFFS_PER_DOC):
                    d = FieldDiff(path, e, a)
                    add(F(FIELD, collection, key, d.describe(), path, e, a))
        for key in actual.keys() - expected.keys():
            result.extra += 1
            add(F(EXTRA_DOC, collection, key,
                  f"document without a row in postgres ({result.table} deleted?)"))  # fmt: skip

    def orders(
        self,
        results: dict[str, TableResult],
        expected: Expected,
        actual: dict[str, Doc],
    ) -> None:
        """Order documents: the order's columns, then each embedded map."""
        exp_orders = expected.documents.get(ORDERS, {})
        children = list(ORDER_CHILDREN.items())  # (table, field)
        top_level_actual = {
            k: {f: v for f, v in d.items() if f not in ORDER_CHILDREN.values()}
            for k, d in actual.items()
        }
        if ORDERS in results:
            self.keyed(results[ORDERS], ORDERS, exp_orders, top_level_actual)
        for table, fld in children:
            result = results.get(table)
            if result is None:
                continue
            exp_by_order = expected.embedded.get(fld, {})
            result.mongo_rows = 0
            for okey, doc in actual.items():
                entries = doc.get(fld, {})
                if not isinstance(entries, dict):
                    result.mismatched += 1
                    self.sink.add(F(FIELD, ORDERS, okey, f"field {fld} is not an object: "
                                    f"{show(entries)}", fld, None, entries))  # fmt: skip
                    continue
                result.mongo_rows += len(entries)
                exp_entries = exp_by_order.get(okey, {})
                for ekey in entries:
                    if ekey not in exp_entries:
                        result.extra += 1
                        self.sink.add(F(EXTRA_DOC, ORDERS, okey,
                                        f"{fld}/{ekey}: entry without a row in postgres "
                                        f"({table} deleted?)"))  # fmt: skip
            for okey, exp_entries in exp_by_order.items():
                got_doc = actual.get(okey)
                got_entries = got_doc.get(fld, {}) if got_doc is not None else {}
                if not isinstance(got_entries, dict):
                    got_entries = {}
                for ekey, entry in exp_entries.items():
                    got = got_entries.get(ekey)
                    if got is None:
                        result.missing += 1
                        where = "" if got_doc is not None else " (no order document)"
                        msg = f"{fld}/{ekey}: row has no entry in MongoDB{where}"
                        self.sink.add(F(MISSING_DOC, ORDERS, okey, msg))
                        continue
                    if not isinstance(got, dict) or not documents_equal(entry, got):
                        result.mismatched += 1
                        got_d = got if isinstance(got, dict) else {}
                        for path, e, a in document_differences(entry, got_d, DIFFS_PER_DOC):
                            d = FieldDiff(f"{fld}.{ekey}.{path}", e, a)
                            self.sink.add(F(FIELD, ORDERS, okey, d.describe(), d.path, e, a))

    def keyless(
        self,
        result: TableResult,
        collection: str,
        expected: dict[Any, list[Any]],
        actual_docs: Iterable[Doc],
        float32_columns: frozenset[str],
    ) -> None:
        """Multisets of row contents: PostgreSQL's copies against the summed ``_ops``."""
        got: dict[Any, list[Any]] = {}  # content -> [count, first _id]
        for d in actual_docs:
            try:
                n = keyless_count(d)
            except (TypeError, ValueError):
                result.mismatched += 1
                self.sink.add(F(FIELD, collection, str(d.get("_id")),
                                f"_ops is not a map of counts: {show(d.get('_ops'))}"))  # fmt: skip
                continue
            content = {k: v for k, v in d.items() if k not in KEYLESS_META}
            ckey = canonical_row(content, float32_columns)
            if n < 0:
                result.mismatched += 1
                self.sink.add(F(FIELD, collection, str(d.get("_id")),
                                f"negative multiplicity {n} for {show(content, 80)}"))  # fmt: skip
            slot = got.get(ckey)
            if slot is None:
                got[ckey] = [n, d.get("_id"), content]
            else:
                if n > 0 and slot[0] > 0:
                    msg = f"same row content as document {slot[1]}: {show(content, 80)}"
                    self.sink.add(F(DUPLICATE, collection, str(d.get("_id")), msg))
                slot[0] += n
        result.mongo_rows = sum(max(0, s[0]) for s in got.values())
        for ckey, (count, row) in expected.items():
            have = got.get(ckey, [0, None])[0]
            if have == count:
                continue
            if have < count:
                result.missing += count - have
            else:
                result.extra += have - count
            msg = f"row {show(row, 100)}: postgres x{count} != mongo x{have}"
            self.sink.add(F(MISSING_DOC if have < count else EXTRA_DOC, collection, None, msg))
        for ckey, (count, first_id, content) in got.items():
            if ckey in expected or count == 0:
                continue
            result.extra += max(count, 0)
            msg = f"row {show(content, 100)}: postgres x0 != mongo x{count}"
            self.sink.add(F(EXTRA_DOC, collection, str(first_id), msg))

    def references(
        self,
        customers: dict[str, Doc] | None,
        products: dict[str, Doc] | None,
        orders: dict[str, Doc],
    ) -> None:
        """Referential integrity inside the read model, joined here (no $lookup)."""
        seen: dict[str, dict[str, str]] = {fld: {} for fld in ORDER_CHILDREN.values()}
        add = self.sink.add
        for okey, doc in orders.items():
            cust = doc.get("customer_id")
            if customers is not None and cust is not None and cust not in customers:
                add(F(REFERENCE, ORDERS, okey, f"customer_id {show(cust)}: customers/{cust} "
                      "does not exist"))  # fmt: skip
            for fld in ORDER_CHILDREN.values():
                entries = doc.get(fld)
                if not isinstance(entries, dict):
                    continue
                for ekey, entry in entries.items():
                    if not isinstance(entry, dict):
                        continue
                    first = seen[fld].setdefault(ekey, okey)
                    if first != okey:
                        add(F(DUPLICATE, ORDERS, okey,
                              f"{fld}/{ekey} is also embedded in orders/{first}"))  # fmt: skip
                    oid = entry.get("order_id")
                    if oid is not None and oid != okey:
                        add(F(REFERENCE, ORDERS, okey, f"{fld}/{ekey}: order_id {show(oid)} "
                              f"but embedded in orders/{okey}"))  # fmt: skip
                    pid = entry.get("product_id")
                    if products is not None and pid is not None and pid not in products:
                        add(F(REFERENCE, ORDERS, okey, f"{fld}/{ekey}: product_id {show(pid)}: "
                              f"products/{pid} does not exist"))  # fmt: skip


# --- one full comparison against the live services --------------------------------------


@dataclass
class Outcome:
    tables: list[TableResult]
    sink: FindingSink
    timings: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why it was not compared


def _read_collections(db: Any, names: list[str], batch_size: int) -> dict[str, list[Doc]]:
    return {n: list(db[n].find({}, batch_size=batch_size)) for n in names}


def compare_once(
    conn: Any,
    db: Any,
    max_findings: int = 200,
    itersize: int = 10_000,
    batch_size: int = 10_000,
    schemas: list[str] | None = None,
) -> Outcome:
    """Read PostgreSQL (one snapshot) and every collection, compare everything once.
    ``schemas``: the captured ones (default: every schema but PostgreSQL's own)."""
    timings: dict[str, float] = {}
    sink = FindingSink(max_findings)
    t0 = time.monotonic()
    begin_snapshot(conn)
    try:
        with conn.cursor() as cur:
            catalog = read_catalog(cur, schemas)
        skipped = {t: SKIPPED_TABLES[t] for t in catalog if t in SKIPPED_TABLES}
        catalog = {t: info for t, info in catalog.items() if t not in skipped}
        wanted = {collection_of(t) for t in catalog}
        present = [
            n
            for n in db.list_collection_names()
            if not n.startswith("system.") and n not in SKIPPED_TABLES
        ]
        to_read = sorted(n for n in present if n in wanted)
        # Collections of no table; names starting with "_" (``_ep_positions``...) are the
        # consumer's metadata, like fields starting with "_".
        strays = sorted(n for n in present if n not in wanted and not n.startswith("_"))
        # MongoDB (FerretDB does the work in its own process) while we read PostgreSQL.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ep-verify-mongo") as pool:
            mongo_future = pool.submit(_read_collections, db, to_read, batch_size)
            expected = Expected()
            results: dict[str, TableResult] = {}
            for name, info in catalog.items():
                result = TableResult(name, collection_of(name), shape_of(info),
                                     inexact_columns=info.inexact_columns)  # fmt: skip
                result.postgres_rows = expected.add_rows(info, read_rows(conn, info, itersize))
                results[name] = result
            timings["postgres_read_s"] = time.monotonic() - t0
            t_wait = time.monotonic()
            actual_lists = mongo_future.result()
            timings["mongo_wait_s"] = time.monotonic() - t_wait
        timings["read_s"] = time.monotonic() - t0
    finally:
        conn.rollback()
    t1 = time.monotonic()
    cmp = Comparator(sink)
    keyless = {n for n, info in catalog.items() if info.keyless and collection_of(n) == n}
    actual: dict[str, dict[str, Doc]] = {
        name: cmp.index(name, docs) for name, docs in actual_lists.items() if name not in keyless
    }
    for name, info in catalog.items():
        result = results[name]
        coll = collection_of(name)
        if name in ORDER_CHILDREN or name == ORDERS:
            continue
        if name in keyless:
            cmp.keyless(result, coll, expected.keyless.get(name, {}),
                        actual_lists.get(name, []), info.float32_columns())  # fmt: skip
        else:
            cmp.keyed(result, coll, expected.documents.get(coll, {}), actual.get(coll, {}))
    if ORDERS in catalog or any(c in catalog for c in ORDER_CHILDREN):
        cmp.orders(results, expected, actual.get(ORDERS, {}))
    cmp.references(
        actual.get("customers") if "customers" in catalog else None,
        actual.get("products") if "products" in catalog else None,
        actual.get(ORDERS, {}),
    )
    for name in strays:
        n = db[name].estimated_document_count()
        if n:
            table = name if "." in name else f"public.{name}"
            msg = f"collection has {n} document(s) but table {table} does not exist"
            sink.add(F(ORPHAN_COLLECTION, name, None, msg))
    timings["compare_s"] = time.monotonic() - t1
    return Outcome(list(results.values()), sink, timings, skipped)
